/* settings: the tern commands for blocking, privacy, the password, devices and account
 * deletion (PROTOCOL.md 14), each one request on libtern-client's account calls. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "cli/cli.h"
#include "cli/cli_int.h"

/* Parses and logs in; returns 0 or an exit status (-1 after --help). */
static int start(tern_cli *c, int argc, char **argv, unsigned allowed, int min_pos, int max_pos) {
  int rc = tern_cli_parse_args(c, argc, argv, allowed, min_pos, max_pos);
  if (rc) return rc;
  return tern_cli_need_login(c);
}

/* Runs a request that answers 204; returns the exit status. */
static int no_content(tern_cli *c, tern_cli_sync *s, int rc) {
  tern_cli_sync_end(s, rc);
  if (rc < 0 && !s->r.status) return tern_cli_complain(c, 2, "bad arguments");
  if ((rc = tern_cli_sync_failed(c, s))) return rc;
  tern_client_response_free(&s->r);
  return 0;
}

static int block_cmd(int argc, char **argv, bool block) {
  tern_cli c;
  int rc = start(&c, argc, argv, 0, 1, 1);
  if (rc) return rc < 0 ? 0 : rc;
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = no_content(&c, &s, tern_client_block(s.c, &c.url, c.creds.token, c.pos[0], block, tern_cli_sync_cb, &s));
  if (!rc) printf("%s %s\n", block ? "blocked" : "unblocked", c.pos[0]);
  return rc;
}

int tern_cli_cmd_block(int argc, char **argv) { return block_cmd(argc, argv, true); }
int tern_cli_cmd_unblock(int argc, char **argv) { return block_cmd(argc, argv, false); }

int tern_cli_cmd_blocks(int argc, char **argv) {
  tern_cli c;
  int rc = start(&c, argc, argv, 0, 0, 0);
  if (rc) return rc < 0 ? 0 : rc;
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = tern_client_blocks(s.c, &c.url, c.creds.token, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  if ((rc = tern_cli_sync_failed(&c, &s))) return rc;
  const cJSON *users = cJSON_GetObjectItemCaseSensitive(s.r.json, "users"), *u;
  int n = 0;
  cJSON_ArrayForEach(u, users) {
    if (cJSON_IsString(u)) printf("%s\n", u->valuestring), n++;
  }
  if (!n) printf("(nobody blocked)\n");
  tern_client_response_free(&s.r);
  return 0;
}

int tern_cli_cmd_privacy(int argc, char **argv) {
  tern_cli c;
  int rc = start(&c, argc, argv, 0, 0, 4);
  if (rc) return rc < 0 ? 0 : rc;
  const char *last_seen = NULL;
  int receipts = -1;
  if (c.npos % 2) return tern_cli_complain(&c, 2, "expected SETTING VALUE pairs (see tern privacy --help)");
  for (int i = 0; i < c.npos; i += 2) {
    const char *k = c.pos[i], *v = c.pos[i + 1];
    if (!strcmp(k, "last-seen") && (!strcmp(v, "everyone") || !strcmp(v, "nobody"))) last_seen = v;
    else if (!strcmp(k, "read-receipts") && (!strcmp(v, "on") || !strcmp(v, "off"))) receipts = !strcmp(v, "on");
    else return tern_cli_complain(&c, 2, "'%s %s': expected last-seen everyone|nobody or read-receipts on|off", k, v);
  }
  tern_cli_sync s;
  if (c.npos) {
    tern_cli_sync_begin(&s);
    rc = no_content(&c, &s, tern_client_privacy_set(s.c, &c.url, c.creds.token, last_seen, receipts, tern_cli_sync_cb, &s));
    if (rc) return rc;
  }
  tern_cli_sync_begin(&s);
  rc = tern_client_privacy_get(s.c, &c.url, c.creds.token, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  if ((rc = tern_cli_sync_failed(&c, &s))) return rc;
  const cJSON *ls = cJSON_GetObjectItemCaseSensitive(s.r.json, "last_seen");
  const cJSON *rr = cJSON_GetObjectItemCaseSensitive(s.r.json, "read_receipts");
  printf("last seen: %s\nread receipts: %s\n", cJSON_IsString(ls) ? ls->valuestring : "?",
         cJSON_IsBool(rr) ? (cJSON_IsTrue(rr) ? "on" : "off") : "?");
  tern_client_response_free(&s.r);
  return 0;
}

int tern_cli_cmd_password(int argc, char **argv) {
  tern_cli c;
  int rc = start(&c, argc, argv, TERN_CLI_OPT_PASSWORD, 0, 0);
  if (rc) return rc < 0 ? 0 : rc;
  char old[1100], next[1100];
  if ((rc = tern_cli_get_password(&c, c.creds.user, false, old, sizeof old))) return rc;
  /* the new one: its own variable, else a prompt or a line of stdin (never --password) */
  tern_cli nc = c;
  nc.password = getenv("TERN_NEW_PASSWORD");
  if (!nc.password) unsetenv("TERN_PASSWORD"); /* the prompt or stdin gives the new one */
  rc = tern_cli_get_password(&nc, "the new password", true, next, sizeof next);
  if (rc) {
    sodium_memzero(old, sizeof old);
    return rc;
  }
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = no_content(&c, &s, tern_client_password(s.c, &c.url, c.creds.token, old, next, tern_cli_sync_cb, &s));
  sodium_memzero(old, sizeof old);
  sodium_memzero(next, sizeof next);
  if (!rc) printf("password changed for %s; your devices stay logged in\n", c.creds.user);
  return rc;
}

int tern_cli_cmd_device(int argc, char **argv) {
  tern_cli c;
  int rc = start(&c, argc, argv, 0, 2, 2);
  if (rc) return rc < 0 ? 0 : rc;
  if (strcmp(c.pos[0], "remove")) return tern_cli_complain(&c, 2, "unknown subcommand '%s' (see tern device --help)", c.pos[0]);
  if (!strcmp(c.pos[1], c.creds.device_id))
    return tern_cli_complain(&c, 2, "that is this device: use tern logout");
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = no_content(&c, &s, tern_client_delete_device(s.c, &c.url, c.creds.token, c.pos[1], tern_cli_sync_cb, &s));
  if (!rc) printf("device %s logged out\n", c.pos[1]);
  return rc;
}

int tern_cli_cmd_delete_account(int argc, char **argv) {
  tern_cli c;
  int rc = start(&c, argc, argv, TERN_CLI_OPT_PASSWORD | TERN_CLI_OPT_YES, 0, 0);
  if (rc) return rc < 0 ? 0 : rc;
  if (!c.yes) return tern_cli_complain(&c, 2, "this deletes %s for good: add --yes", c.creds.user);
  char pw[1100];
  if ((rc = tern_cli_get_password(&c, c.creds.user, false, pw, sizeof pw))) return rc;
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = no_content(&c, &s, tern_client_delete_account(s.c, &c.url, c.creds.token, pw, tern_cli_sync_cb, &s));
  sodium_memzero(pw, sizeof pw);
  if (rc) return rc;
  tern_cli_creds_remove(c.creds_path);
  tern_cli_e2e_remove(&c);
  printf("deleted the account %s on %s\n", c.creds.user, c.server);
  return 0;
}
