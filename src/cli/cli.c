/* cli.c: the commands of the `tern` CLI. Each runs its own uv loop: the account commands
 * with one synchronous HTTP call, send/listen/chat with one WebSocket session. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/map.h"
#include "base/util.h"
#include "cli/cli_int.h"
#include "client/client.h"
#include "net/tls.h"

#define SEND_TIMEOUT_MS 30000 /* tern send gives up after this long without --timeout */
#define PASSWORD_MAX 1024     /* PROTOCOL.md: passwords are 8-1024 bytes */
#define READ_BATCH 1000       /* ids in one read frame (PROTOCOL.md 5) */

/* ---- usage ---- */

static const struct {
  const char *name;
  const char *text;
} usages[] = {
    {"block",
     "usage: tern block USER [--server URL]\n"
     "\n"
     "Blocks USER: their messages to you are no longer delivered (they are not told), they\n"
     "see you as never online, and you cannot message them until you unblock them. Groups\n"
     "are not affected.\n"},
    {"unblock", "usage: tern unblock USER [--server URL]\n\nUnblocks USER.\n"},
    {"blocks", "usage: tern blocks [--server URL]\n\nLists the users you have blocked, one a line.\n"},
    {"privacy",
     "usage: tern privacy [last-seen everyone|nobody] [read-receipts on|off] [--server URL]\n"
     "\n"
     "Without arguments, shows your settings. last-seen nobody: nobody sees when you were last\n"
     "online, and you see nobody's. read-receipts off: your reads of 1:1 messages send no read\n"
     "receipts, and you get none from others (groups keep theirs).\n"},
    {"password",
     "usage: tern password [--password CURRENT] [--server URL]\n"
     "\n"
     "Changes the password. The current one comes from --password, else $TERN_PASSWORD, else a\n"
     "prompt; the new one from $TERN_NEW_PASSWORD, else a prompt (twice), else a line of\n"
     "stdin. Your devices stay logged in.\n"},
    {"device",
     "usage: tern device remove DEVICE_ID [--server URL]\n"
     "\n"
     "Logs out one of your devices (tern me lists them with their ids); its connections close.\n"},
    {"delete-account",
     "usage: tern delete-account --yes [--password P] [--server URL]\n"
     "\n"
     "Deletes your account: every device, message waiting, key, block and setting, your uploads\n"
     "never sent, and your place in every group. The name can be registered again only after\n"
     "the server's hold (30 days by default). There is no undo: --yes is required.\n"},
    {"register",
     "usage: tern register USER [--password P] [--device LABEL] [--server URL]\n"
     "\n"
     "Creates the account USER and logs this machine in as its first device. The token is\n"
     "kept in $XDG_CONFIG_HOME/tern (or ~/.config/tern), one file per server, mode 0600.\n"
     "The password comes from --password, else $TERN_PASSWORD, else a prompt (a line of\n"
     "stdin when it is not a terminal).\n"},
    {"login",
     "usage: tern login USER [--password P] [--device LABEL] [--server URL]\n"
     "\n"
     "Logs in as USER, creating a new device (each login is a device with its own inbox).\n"
     "Replaces the credentials kept for this server. Password as for register.\n"},
    {"logout",
     "usage: tern logout [--server URL]\n"
     "\n"
     "Logs this device out: the server deletes it and its inbox; the local token is removed.\n"},
    {"me",
     "usage: tern me [--server URL]\n"
     "\n"
     "Shows who you are logged in as on this server, and your devices.\n"},
    {"whois",
     "usage: tern whois USER [--server URL]\n"
     "\n"
     "Shows whether USER is online, or when they were last seen, and their display name when\n"
     "they set one (tern profile USER shows the avatar too).\n"},
    {"react",
     "usage: tern react MSG_ID EMOJI [--to USER | --group GROUP] [--e2e|--plain] [--timeout DURATION]\n"
     "\n"
     "Reacts to the message MSG_ID with EMOJI (at most 32 bytes); a new reaction replaces your\n"
     "last one, and \"\" takes it back. The conversation is the one this device saw MSG_ID in\n"
     "(sent, listened to or chatted), else give it with --to USER or --group GROUP. Prints the\n"
     "reaction's own msg_id. Encrypted like a message when the conversation is.\n"},
    {"edit",
     "usage: tern edit MSG_ID TEXT [--to USER | --group GROUP] [--e2e|--plain] [--timeout DURATION]\n"
     "\n"
     "Replaces the text of your message MSG_ID with TEXT (within the server's edit window, 15\n"
     "minutes by default). The conversation as for tern react. Encrypted like a message when the\n"
     "conversation is.\n"},
    {"delete",
     "usage: tern delete MSG_ID [--to USER | --group GROUP] [--timeout DURATION] [--server URL]\n"
     "\n"
     "Deletes your message MSG_ID for everyone (a group admin may delete any member's): where it\n"
     "still waits on the server it is replaced by the delete, and everyone's clients show\n"
     "\"This message was deleted\". Within the server's delete window (48 hours by default). The\n"
     "conversation as for tern react. A delete is never encrypted: the server must act on it.\n"},
    {"profile",
     "usage: tern profile [--name NAME] [--avatar FILE | --no-avatar] [--server URL]\n"
     "       tern profile [USER] [--server URL]\n"
     "\n"
     "Sets your display name (0-64 bytes; \"\" clears it) and your avatar (a JPEG, PNG, WebP or\n"
     "GIF, uploaded as an avatar: anyone signed in may see it, except those you blocked), then\n"
     "shows your profile. Without options, shows yours, or USER's: name, display name, avatar\n"
     "(a media id for tern fetch). Whoever watches you (tern chat, tern listen USER) sees the\n"
     "change at once.\n"
     "  --name NAME    the display name\n"
     "  --avatar FILE  the avatar image\n"
     "  --no-avatar    remove the avatar\n"},
    {"send",
     "usage: tern send USER TEXT [--reply MSG_ID] [--e2e|--plain] [--timeout DURATION] [--server URL]\n"
     "       tern send USER --image FILE [TEXT] [--timeout DURATION] [--server URL]\n"
     "       tern send --group GROUP TEXT [--timeout DURATION] [--server URL]\n"
     "       tern send --group GROUP --image FILE [TEXT] [--timeout DURATION] [--server URL]\n"
     "\n"
     "Sends TEXT to USER (TEXT \"-\" reads it from stdin) and prints the message id once the\n"
     "server has stored it (the single tick). With --image, FILE (a JPEG, PNG, WebP or GIF)\n"
     "is uploaded first and the message carries it, with TEXT as an optional caption. Gives up\n"
     "after --timeout (default 30s for the message; an upload gets at least 2m).\n"
     "With --group, the message goes to every member of GROUP (its id, or its name when no\n"
     "other group of yours has that name); after the message id, \"✓ sent to N of M\" on\n"
     "stderr says how many of the other members it reached, and names those it missed.\n"
     "End-to-end encryption: the message (and the image) is encrypted for every device of\n"
     "the recipients and your other devices whenever all of the recipients have keys; when\n"
     "one has none, a line on stderr says so and it goes in plaintext.\n"
     "  --e2e    encrypted or not at all (exit 1 when it cannot be encrypted)\n"
     "  --plain  never encrypt\n"
     "  --reply MSG_ID  the message quotes MSG_ID, an earlier message of the same conversation\n"},
    {"safety",
     "usage: tern safety USER [--server URL]\n"
     "\n"
     "Prints the safety number you share with USER: 60 digits in 12 groups of 5, computed over\n"
     "the identity keys of all of your devices and all of theirs (Signal's numeric fingerprint).\n"
     "Compare it with the one USER sees: equal numbers mean nobody sits in between. It changes\n"
     "when either of you adds or removes a device.\n"},
    {"fetch",
     "usage: tern fetch MEDIA_ID -o FILE [--thumb] [--timeout DURATION] [--server URL]\n"
     "\n"
     "Downloads an image you uploaded or were sent into FILE (\"-\": stdout), written to a\n"
     "temporary file and renamed into place once complete; the original is checked against\n"
     "its SHA-256 (the ETag). --thumb fetches the JPEG thumbnail (at most 320 px) instead.\n"
     "Note: the server deletes an image once every device it was sent to has fetched the\n"
     "original, so fetch it once per device and keep the file.\n"},
    {"listen",
     "usage: tern listen [USER...] [--count N] [--timeout DURATION] [--server URL]\n"
     "\n"
     "Prints messages and receipts as they arrive (first those waiting on the server), and\n"
     "acknowledges them. Stops after N messages with --count, after DURATION with --timeout\n"
     "(an error when --count was not reached), or on Ctrl-C. Group messages show the group\n"
     "and the sender, group changes one line each, and receipts for your group messages\n"
     "count the members: \"delivered to 2 of 3\", \"read by 1 of 3\".\n"
     "Replies, reactions, edits and deletes show what they refer to: \"(reply to ID)\",\n"
     "\"reacted 👍 to ID\", \"(edit of ID)\", \"deleted ID\". The USERs are watched: their\n"
     "profile changes (display name, avatar) show as lines of their own.\n"},
    {"chat",
     "usage: tern chat USER [--e2e|--plain] [--timeout DURATION] [--server URL]\n"
     "       tern chat --group GROUP [--e2e|--plain] [--timeout DURATION] [--server URL]\n"
     "\n"
     "Talks with USER: each line typed on stdin is sent; each sent message shows its ticks:\n"
     "… waiting, ✓ stored, ✓✓ delivered, blue ✓✓ (\"read\" when not on a terminal) read.\n"
     "Incoming messages are printed, acknowledged and marked read. Ends on Ctrl-C or Ctrl-D\n"
     "(end of input: once every message has its tick; with --timeout, once every message\n"
     "is read or DURATION has passed).\n"
     "With --group, the conversation is GROUP's (its id or unique name): each member's\n"
     "messages with their name, the group's changes and who is typing as lines of their\n"
     "own, and per message of yours \"✓ delivered to 2 of 3, read by 1\" (✓✓ once every\n"
     "member it reached has it).\n"
     "Lines are end-to-end encrypted when everyone in the chat has keys (🔒 marks what\n"
     "arrived encrypted); --e2e refuses to chat otherwise, --plain never encrypts.\n"},
    {"group",
     "usage: tern group create NAME [USER...] [--description D]\n"
     "       tern group add GROUP USER...\n"
     "       tern group remove GROUP USER\n"
     "       tern group leave GROUP\n"
     "       tern group admin GROUP USER [--off]\n"
     "       tern group rename GROUP [NAME] [--description D]\n"
     "       tern group info GROUP\n"
     "       tern group list\n"
     "\n"
     "Group chats. GROUP is a group's id, or its name when no other group of yours has that\n"
     "name. Only admins may add, remove others, rename and change admins. Send to a group with\n"
     "tern send --group GROUP, talk in it with tern chat --group GROUP.\n"
     "tern group SUBCOMMAND --help shows one of them.\n"},
    {"group create",
     "usage: tern group create NAME [USER...] [--description D] [--server URL]\n"
     "\n"
     "Creates a group called NAME (1-100 bytes) with you as its admin and the USERs as its\n"
     "members, and prints its id on the first line, then its members.\n"
     "  --description D  what the group is about (0-512 bytes)\n"},
    {"group add",
     "usage: tern group add GROUP USER... [--server URL]\n"
     "\n"
     "Adds the USERs to GROUP (admins only) and prints who was added and the members now.\n"
     "Users already in the group are left as they are.\n"},
    {"group remove",
     "usage: tern group remove GROUP USER [--server URL]\n"
     "\n"
     "Takes USER out of GROUP (admins only; removing yourself is leaving).\n"},
    {"group leave",
     "usage: tern group leave GROUP [--server URL]\n"
     "\n"
     "Leaves GROUP. When the last admin leaves, the longest-standing member becomes admin;\n"
     "when the last member leaves, the group is gone.\n"},
    {"group admin",
     "usage: tern group admin GROUP USER [--off] [--server URL]\n"
     "\n"
     "Makes USER an admin of GROUP (admins only); --off makes them a plain member again\n"
     "(the only admin cannot step down).\n"
     "  --off  remove the admin role instead of giving it\n"},
    {"group rename",
     "usage: tern group rename GROUP [NAME] [--description D] [--server URL]\n"
     "\n"
     "Renames GROUP to NAME and/or sets its description (admins only; --description \"\"\n"
     "clears it).\n"
     "  --description D  the new description\n"},
    {"group info",
     "usage: tern group info GROUP [--server URL]\n"
     "\n"
     "Shows GROUP: name, description, who created it and when, and its members in the order\n"
     "they joined, with their role and since when.\n"},
    {"group list",
     "usage: tern group list [--server URL]\n"
     "\n"
     "Lists your groups (every page), one a line: id, your role, members, name.\n"},
};

static const char common_help[] =
    "\n"
    "  --server URL   the server, http://HOST:PORT or https://HOST[:PORT] (default $TERN_SERVER, else "
    TERN_CLIENT_DEFAULT_SERVER ")\n"
    "  --ca-file FILE the CAs (PEM) that an https:// server's certificate must chain to (default\n"
    "                 $TERN_CA_FILE, else the system's)\n"
    "  --help         this text\n";

const char *tern_cli_cmd_usage(const char *cmd) {
  for (size_t i = 0; i < TERN_ARRAY_LEN(usages); i++)
    if (strcmp(usages[i].name, cmd) == 0) return usages[i].text;
  return NULL;
}

const char *tern_cli_usage(void) {
  return "usage: tern COMMAND [ARGS] [--server URL]\n"
         "\n"
         "commands:\n"
         "  register USER     create an account and log in\n"
         "  login USER        log in (a new device)\n"
         "  logout            log this device out\n"
         "  me                show the account and its devices\n"
         "  whois USER        online, or last seen\n"
         "  send USER TEXT    send one message (--image FILE: with an image; --group GROUP)\n"
         "  fetch MEDIA_ID    download an image (-o FILE)\n"
         "  listen            print arriving messages and receipts\n"
         "  chat USER         interactive conversation (--group GROUP: in a group)\n"
         "  react ID EMOJI    react to a message (edit ID TEXT, delete ID: your own messages)\n"
         "  profile           show or set your display name and avatar (profile USER: theirs)\n"
         "  group ...         create, add, remove, leave, admin, rename, info, list\n"
         "  safety USER       the safety number to compare with USER (end-to-end encryption)\n"
         "  block USER        block USER (unblock USER, blocks: the list)\n"
         "  privacy ...       show or set last seen (everyone|nobody) and read receipts (on|off)\n"
         "  password          change the password (devices stay logged in)\n"
         "  device remove ID  log out one of your other devices (tern me lists them)\n"
         "  delete-account    delete the account and everything of it\n"
         "\n"
         "tern COMMAND --help shows a command's options. Exit status: 0 ok, 1 server or\n"
         "network error, 2 usage error.\n";
}

/* ---- arguments ---- */

int tern_cli_complain(const tern_cli *c, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "tern: %s: ", c->cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return status;
}

/* Positional arguments are moved to the front of argv as they are met (an option's value
 * and the option itself were read before their slots are reused), so that commands taking
 * any number of them need no allocation. */
int tern_cli_parse_args(tern_cli *c, int argc, char **argv, unsigned allowed, int min_pos, int max_pos) {
  memset(c, 0, sizeof *c);
  c->cmd = argv[0];
  c->pos = argv + 1;
  const char *server = getenv("TERN_SERVER");
  bool only_pos = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
      if (max_pos != TERN_CLI_ANY_POS && c->npos >= max_pos)
        return tern_cli_complain(c, 2, "unexpected argument '%s' (see tern %s --help)", a, c->cmd);
      argv[1 + c->npos++] = argv[i];
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_pos = true;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      printf("%s%s", tern_cli_cmd_usage(c->cmd), common_help);
      return -1;
    }
    /* --name value or --name=value */
    char name[32];
    const char *val = NULL;
    const char *eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
    if (nlen >= sizeof name) return tern_cli_complain(c, 2, "unknown option %s (see tern %s --help)", a, c->cmd);
    memcpy(name, a, nlen);
    name[nlen] = '\0';
    unsigned bit;
    if (strcmp(name, "--server") == 0) bit = 0;
    else if (strcmp(name, "--ca-file") == 0) bit = TERN_CLI_OPT_CA_FILE;
    else if (strcmp(name, "--password") == 0) bit = TERN_CLI_OPT_PASSWORD;
    else if (strcmp(name, "--device") == 0) bit = TERN_CLI_OPT_DEVICE;
    else if (strcmp(name, "--count") == 0) bit = TERN_CLI_OPT_COUNT;
    else if (strcmp(name, "--timeout") == 0) bit = TERN_CLI_OPT_TIMEOUT;
    else if (strcmp(name, "--image") == 0) bit = TERN_CLI_OPT_IMAGE;
    else if (strcmp(name, "--output") == 0 || strcmp(name, "-o") == 0) bit = TERN_CLI_OPT_OUTPUT;
    else if (strcmp(name, "--thumb") == 0) bit = TERN_CLI_OPT_THUMB;
    else if (strcmp(name, "--description") == 0) bit = TERN_CLI_OPT_DESCRIPTION;
    else if (strcmp(name, "--off") == 0) bit = TERN_CLI_OPT_OFF;
    else if (strcmp(name, "--group") == 0) bit = TERN_CLI_OPT_GROUP;
    else if (strcmp(name, "--e2e") == 0) bit = TERN_CLI_OPT_E2E;
    else if (strcmp(name, "--plain") == 0) bit = TERN_CLI_OPT_PLAIN;
    else if (strcmp(name, "--yes") == 0) bit = TERN_CLI_OPT_YES;
    else if (strcmp(name, "--reply") == 0) bit = TERN_CLI_OPT_REPLY;
    else if (strcmp(name, "--to") == 0) bit = TERN_CLI_OPT_TO;
    else if (strcmp(name, "--name") == 0) bit = TERN_CLI_OPT_NAME;
    else if (strcmp(name, "--avatar") == 0) bit = TERN_CLI_OPT_AVATAR;
    else if (strcmp(name, "--no-avatar") == 0) bit = TERN_CLI_OPT_NO_AVATAR;
    else return tern_cli_complain(c, 2, "unknown option %s (see tern %s --help)", a, c->cmd);
    if (bit && bit != TERN_CLI_OPT_CA_FILE && !(allowed & bit))
      return tern_cli_complain(c, 2, "option %s does not apply here (see tern %s --help)", name, c->cmd);
    if (bit == TERN_CLI_OPT_THUMB || bit == TERN_CLI_OPT_OFF || bit == TERN_CLI_OPT_E2E || bit == TERN_CLI_OPT_PLAIN ||
        bit == TERN_CLI_OPT_YES || bit == TERN_CLI_OPT_NO_AVATAR) {
      if (eq) return tern_cli_complain(c, 2, "option %s takes no value", name);
      if (bit == TERN_CLI_OPT_YES) c->yes = true;
      else if (bit == TERN_CLI_OPT_NO_AVATAR) c->no_avatar = true;
      else if (bit == TERN_CLI_OPT_THUMB) c->thumb = true;
      else if (bit == TERN_CLI_OPT_E2E) c->e2e = true;
      else if (bit == TERN_CLI_OPT_PLAIN) c->plain = true;
      else c->off = true;
      continue;
    }
    if (eq) val = eq + 1;
    else if (i + 1 < argc) val = argv[++i];
    else return tern_cli_complain(c, 2, "option %s needs a value", name);
    if (bit == 0) {
      server = val;
    } else if (bit == TERN_CLI_OPT_CA_FILE) {
      /* every context this process makes reads it (tern_cli_client_options) */
      if (access(val, R_OK) != 0) return tern_cli_complain(c, 2, "--ca-file '%s': cannot read it", val);
      setenv("TERN_CA_FILE", val, 1);
    } else if (bit == TERN_CLI_OPT_PASSWORD) {
      c->password = val;
    } else if (bit == TERN_CLI_OPT_DEVICE) {
      if (strlen(val) > 64) return tern_cli_complain(c, 2, "--device: at most 64 characters");
      c->device = val;
    } else if (bit == TERN_CLI_OPT_COUNT) {
      char *end;
      errno = 0;
      long n = strtol(val, &end, 10);
      if (errno || *end || n <= 0) return tern_cli_complain(c, 2, "--count: expected a positive number, got '%s'", val);
      c->count = n;
    } else if (bit == TERN_CLI_OPT_TIMEOUT) {
      if (tern_cli_parse_duration(val, &c->timeout_ms) < 0 || c->timeout_ms <= 0)
        return tern_cli_complain(c, 2, "--timeout: expected a duration like 500ms, 10s or 2m, got '%s'", val);
    } else if (bit == TERN_CLI_OPT_IMAGE) {
      c->image = val;
    } else if (bit == TERN_CLI_OPT_OUTPUT) {
      c->output = val;
    } else if (bit == TERN_CLI_OPT_DESCRIPTION) {
      c->description = val;
    } else if (bit == TERN_CLI_OPT_GROUP) {
      if (!*val) return tern_cli_complain(c, 2, "--group: expected a group's id or name");
      c->group = val;
    } else if (bit == TERN_CLI_OPT_REPLY) {
      if (!*val) return tern_cli_complain(c, 2, "--reply: expected a msg_id");
      c->reply = val;
    } else if (bit == TERN_CLI_OPT_TO) {
      if (!*val) return tern_cli_complain(c, 2, "--to: expected a username");
      c->to = val;
    } else if (bit == TERN_CLI_OPT_NAME) {
      c->name = val;
    } else if (bit == TERN_CLI_OPT_AVATAR) {
      c->avatar = val;
    }
  }
  if (c->npos < min_pos) return tern_cli_complain(c, 2, "missing arguments (see tern %s --help)", c->cmd);
  if (!server || !*server) server = TERN_CLIENT_DEFAULT_SERVER;
  int rc = tern_client_url_parse(server, &c->url);
  if (rc == -EPROTONOSUPPORT)
    return tern_cli_complain(c, 2, "--server '%s': only http:// and https:// servers are supported", server);
  if (rc < 0) return tern_cli_complain(c, 2, "--server '%s': expected http://HOST:PORT or https://HOST[:PORT]", server);
  snprintf(c->server, sizeof c->server, "%s://%s", c->url.tls ? "https" : "http", c->url.hostport);
  rc = tern_cli_creds_path(&c->url, c->creds_path, sizeof c->creds_path);
  if (rc < 0) return tern_cli_complain(c, 1, "cannot find a config directory: set HOME or XDG_CONFIG_HOME");
  return 0;
}

/* The credentials for this server, or an error status. */
int tern_cli_need_login(tern_cli *c) {
  int rc = tern_cli_creds_load(c->creds_path, &c->creds);
  if (rc == -ENOENT) return tern_cli_complain(c, 1, "not logged in to %s (run: tern login USER)", c->server);
  if (rc < 0)
    return tern_cli_complain(c, 1, "cannot read %s (%s); run tern login again", c->creds_path,
                    rc == -EBADMSG ? "not a tern credentials file" : strerror(-rc));
  return 0;
}

const char *tern_cli_errstr(int err) {
  if (err == TERN_TLS_ERR_UNTRUSTED)
    return "its TLS certificate could not be verified (name its CA with --ca-file or $TERN_CA_FILE)";
  if (err == UV_EPROTO) return "TLS handshake or protocol error";
  const char *s = uv_strerror(err);
  if (strncmp(s, "Unknown", 7) == 0) s = strerror(-err);
  return s;
}

/* ---- synchronous HTTP ---- */

void tern_cli_sync_begin_timeout(tern_cli_sync *s, int64_t timeout_ms) {
  memset(s, 0, sizeof *s);
  uv_loop_init(&s->loop);
  tern_client_options o = {.http_timeout_ms = timeout_ms, .ca_file = getenv("TERN_CA_FILE")};
  s->c = tern_client_new(&s->loop, &o);
}

void tern_cli_sync_begin(tern_cli_sync *s) { tern_cli_sync_begin_timeout(s, 0); }

void tern_cli_sync_cb(tern_client_response *r, void *arg) {
  tern_cli_sync *s = arg;
  tern_client_response_move(&s->r, r);
  s->done = true;
}

/* rc: what starting the request returned. */
void tern_cli_sync_end(tern_cli_sync *s, int rc) {
  if (rc == 0) uv_run(&s->loop, UV_RUN_DEFAULT);
  tern_client_free(s->c);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  if (!s->done) tern_client_response_fail(&s->r, rc < 0 ? rc : UV_ECANCELED, "request");
}

int tern_cli_http_failed(const tern_cli *c, const tern_client_response *r) {
  if (r->err && r->status == 0) {
    if (r->err == -EBADMSG) return tern_cli_complain(c, 1, "%s did not answer like a tern server", c->server);
    return tern_cli_complain(c, 1, "cannot reach %s: %s", c->server, tern_cli_errstr(r->err));
  }
  if (r->status == 401 && strcmp(r->code, "unauthorized") == 0)
    return tern_cli_complain(c, 1, "%s (%s); run tern login again", r->message, r->code);
  if (r->status == 429 && r->retry_after[0])
    return tern_cli_complain(c, 1, "%s (%s); retry after %s s", r->message, r->code, r->retry_after);
  return tern_cli_complain(c, 1, "%s (%s)", r->message, r->code);
}

/* For a request that must succeed: 0 when it did, else the exit status after saying why
 * (the response is then freed). */
int tern_cli_sync_failed(const tern_cli *c, tern_cli_sync *s) {
  if (s->r.ok) return 0;
  int st = tern_cli_http_failed(c, &s->r);
  tern_client_response_free(&s->r);
  return st;
}

/* ---- passwords ---- */

/* Reads one line from fd 0 without its newline. Returns its length or -1 at EOF/error. */
static ssize_t read_line_fd0(char *out, size_t cap) {
  size_t n = 0;
  for (;;) {
    char ch;
    ssize_t r = read(0, &ch, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (n == 0) return -1;
      break;
    }
    if (ch == '\n') break;
    if (n + 1 < cap) out[n++] = ch;
  }
  if (n && out[n - 1] == '\r') n--;
  out[n] = '\0';
  return (ssize_t)n;
}

static ssize_t prompt_hidden(const char *prompt, char *out, size_t cap) {
  struct termios old, quiet;
  fputs(prompt, stderr);
  fflush(stderr);
  bool restore = tcgetattr(0, &old) == 0;
  if (restore) {
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    tcsetattr(0, TCSAFLUSH, &quiet);
  }
  ssize_t n = read_line_fd0(out, cap);
  if (restore) tcsetattr(0, TCSAFLUSH, &old);
  return n;
}

/* Fills out with the password; returns 0 or an exit status. */
int tern_cli_get_password(tern_cli *c, const char *user, bool confirm, char *out, size_t cap) {
  const char *p = c->password ? c->password : getenv("TERN_PASSWORD");
  if (p) {
    if (strlen(p) >= cap) return tern_cli_complain(c, 2, "password too long");
    snprintf(out, cap, "%s", p);
  } else if (isatty(0)) {
    char prompt[80];
    snprintf(prompt, sizeof prompt, "Password for %s: ", user);
    if (prompt_hidden(prompt, out, cap) < 0) return tern_cli_complain(c, 2, "no password given");
    if (confirm) {
      char again[PASSWORD_MAX + 2];
      if (prompt_hidden("Repeat the password: ", again, sizeof again) < 0 || strcmp(again, out) != 0) {
        memset(again, 0, sizeof again);
        return tern_cli_complain(c, 2, "the passwords differ");
      }
      memset(again, 0, sizeof again);
    }
  } else if (read_line_fd0(out, cap) < 0) {
    return tern_cli_complain(c, 2, "no password given (use --password, TERN_PASSWORD or stdin)");
  }
  if (!out[0]) return tern_cli_complain(c, 2, "empty password");
  return 0;
}

/* ---- register, login ---- */

static int account_cmd(int argc, char **argv, bool reg) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, TERN_CLI_OPT_PASSWORD | TERN_CLI_OPT_DEVICE, 1, 1);
  if (rc) return rc < 0 ? 0 : rc;
  const char *user = c.pos[0];
  char password[PASSWORD_MAX + 2];
  rc = tern_cli_get_password(&c, user, reg, password, sizeof password);
  if (rc) return rc;
  char device[80];
  if (c.device) {
    snprintf(device, sizeof device, "%s", c.device);
  } else {
    char host[52] = ""; /* "tern CLI on " + host fits the 64-char label limit */
    gethostname(host, sizeof host - 1);
    snprintf(device, sizeof device, "tern CLI on %s", host[0] ? host : "this machine");
  }
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = reg ? tern_client_register(s.c, &c.url, user, password, device, tern_cli_sync_cb, &s)
           : tern_client_login(s.c, &c.url, user, password, device, tern_cli_sync_cb, &s);
  memset(password, 0, sizeof password);
  tern_cli_sync_end(&s, rc);
  if ((rc = tern_cli_sync_failed(&c, &s))) return rc;
  tern_client_account acct;
  rc = tern_client_parse_account(&s.r, &acct);
  tern_client_response_free(&s.r);
  if (rc < 0) return tern_cli_complain(&c, 1, "%s answered without a user, device_id and token", c.server);
  tern_cli_creds cr;
  memset(&cr, 0, sizeof cr);
  snprintf(cr.server, sizeof cr.server, "%s", c.server);
  memcpy(cr.user, acct.user, sizeof cr.user);
  memcpy(cr.device_id, acct.device_id, sizeof cr.device_id);
  memcpy(cr.token, acct.token, sizeof cr.token);
  rc = tern_cli_creds_save(c.creds_path, &cr);
  c.creds = cr;
  memset(&cr, 0, sizeof cr);
  if (rc < 0) {
    memset(&acct, 0, sizeof acct);
    return tern_cli_complain(&c, 1, "cannot save the credentials in %s: %s", c.creds_path, strerror(-rc));
  }
  printf("%s %s on %s (device %s)\n", reg ? "registered" : "logged in as", acct.user, c.server, acct.device_id);
  fflush(stdout);
  /* Each device has its own identity key: a login makes and publishes new keys. */
  tern_cli_e2e_publish(&c);
  memset(&c.creds, 0, sizeof c.creds);
  memset(&acct, 0, sizeof acct);
  return 0;
}

int tern_cli_cmd_register(int argc, char **argv) { return account_cmd(argc, argv, true); }
int tern_cli_cmd_login(int argc, char **argv) { return account_cmd(argc, argv, false); }

/* ---- logout, me, whois ---- */

int tern_cli_cmd_logout(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, 0, 0, 0);
  if (rc) return rc < 0 ? 0 : rc;
  if ((rc = tern_cli_need_login(&c))) return rc;
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = tern_client_logout(s.c, &c.url, c.creds.token, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  /* A token the server no longer knows (401) is as good as logged out. */
  bool gone = s.r.ok || s.r.status == 401;
  int st = 0;
  if (!gone) st = tern_cli_http_failed(&c, &s.r);
  tern_client_response_free(&s.r);
  if (!gone) return st;
  rc = tern_cli_creds_remove(c.creds_path);
  if (rc < 0 && rc != -ENOENT) return tern_cli_complain(&c, 1, "cannot remove %s: %s", c.creds_path, strerror(-rc));
  tern_cli_e2e_remove(&c); /* the server deleted this device's keys with it */
  printf("logged out %s from %s\n", c.creds.user, c.server);
  return 0;
}

int tern_cli_cmd_me(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, 0, 0, 0);
  if (rc) return rc < 0 ? 0 : rc;
  if ((rc = tern_cli_need_login(&c))) return rc;
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = tern_client_me(s.c, &c.url, c.creds.token, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  if ((rc = tern_cli_sync_failed(&c, &s))) return rc;
  const cJSON *user = cJSON_GetObjectItemCaseSensitive(s.r.json, "user");
  const cJSON *dev = cJSON_GetObjectItemCaseSensitive(s.r.json, "device_id");
  const cJSON *devices = cJSON_GetObjectItemCaseSensitive(s.r.json, "devices");
  const char *self = cJSON_IsString(dev) ? dev->valuestring : "";
  printf("%s on %s\n", cJSON_IsString(user) ? user->valuestring : "?", c.server);
  printf("devices:\n");
  int64_t now = tern_now_ms();
  const cJSON *d;
  cJSON_ArrayForEach(d, devices) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(d, "device_id");
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(d, "label");
    const cJSON *seen = cJSON_GetObjectItemCaseSensitive(d, "last_seen");
    const char *ids = cJSON_IsString(id) ? id->valuestring : "?";
    char when[64] = "never connected";
    if (cJSON_IsNumber(seen)) {
      char ago[48];
      tern_cli_humanize_ago(now, (int64_t)seen->valuedouble, ago, sizeof ago);
      snprintf(when, sizeof when, "last seen %s", ago);
    }
    printf("  %s%s  %s  (%s)\n", ids, strcmp(ids, self) == 0 ? " (this device)" : "",
           cJSON_IsString(label) && label->valuestring[0] ? label->valuestring : "-", when);
  }
  tern_client_response_free(&s.r);
  return 0;
}

int tern_cli_cmd_whois(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, 0, 1, 1);
  if (rc) return rc < 0 ? 0 : rc;
  if ((rc = tern_cli_need_login(&c))) return rc;
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  rc = tern_client_whois(s.c, &c.url, c.creds.token, c.pos[0], tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  if (s.r.status == 404) {
    tern_client_response_free(&s.r);
    return tern_cli_complain(&c, 1, "no such user: %s", c.pos[0]);
  }
  if ((rc = tern_cli_sync_failed(&c, &s))) return rc;
  tern_client_user_status us;
  rc = tern_client_parse_user_status(&s.r, &us);
  tern_client_response_free(&s.r);
  if (rc < 0) return tern_cli_complain(&c, 1, "%s answered without a user", c.server);
  if (us.online) {
    printf("%s is online\n", us.user);
  } else if (us.last_seen < 0) {
    printf("%s has never been online\n", us.user);
  } else {
    char ago[48], when[32];
    tern_cli_humanize_ago(tern_now_ms(), us.last_seen, ago, sizeof ago);
    tern_cli_format_time(us.last_seen, true, when, sizeof when);
    printf("%s was last seen %s (%s)\n", us.user, ago, when);
  }
  if (us.display_name[0]) {
    char name[TERN_CLIENT_DISPLAY_NAME_MAX * 4 + 1];
    tern_cli_printable(us.display_name, name, sizeof name);
    printf("display name: %s\n", name);
  }
  return 0;
}

/* ---- WebSocket sessions: send, listen, chat ---- */

typedef struct session session;
typedef void (*session_event_fn)(session *s, const tern_client_event *ev);

struct session {
  tern_cli *c;                    /* arguments and credentials */
  uv_loop_t loop;            /* private loop */
  tern_client *client;       /* context */
  tern_client_conn *conn;    /* the WebSocket, until CLOSED */
  uv_timer_t timer;          /* --timeout (or the default for send) */
  uv_signal_t sigint;        /* Ctrl-C: close cleanly */
  uv_signal_t sigterm;
  session_event_fn on_event; /* the command's events (READY and later; not CLOSED) */
  void (*on_timeout)(session *s);
  void (*on_closed)(session *s); /* the command closes its own handles here */
  void *data;                /* the command's state */
  int status;                /* exit status */
  bool quitting;             /* we asked to close: CLOSED is expected */
  bool ready;                /* READY arrived */
  bool stopped;              /* session handles closed */
  tern_e2e *e;               /* this device's E2E state (listen, chat), or NULL: owned */
};

static tern_str view_of(const char *p) { return (tern_str){.p = p, .n = p ? strlen(p) : 0}; }

/* An encrypted msg: decrypted and handed on as if it had come in plaintext (body, media,
 * reply_to, reaction, edit from inside), with a lock before the text; on failure a
 * placeholder, and the sender is told with decrypt_error so that it sends again. */
static void session_e2e_msg(session *s, const tern_client_event *ev) {
  tern_client_event copy = *ev;
  tern_envelope *env = &copy.frame.env;
  tern_e2e_inner in;
  char err[200] = "";
  int rc = tern_cli_e2e_decrypt(s->e, &ev->frame.env, &in, err, sizeof err);
  if (rc == 0 && (ev->group_id ? !in.group_id || strcmp(in.group_id, ev->group_id) != 0 : in.group_id != NULL)) {
    /* The sender wrote the conversation inside: a relay that moves a message elsewhere is
     * caught here. */
    snprintf(err, sizeof err, "it was written for another conversation");
    tern_e2e_inner_free(&in);
    rc = -EBADMSG;
  }
  if (rc == -EALREADY) {
    /* Decrypted before, its ack lost: the ratchet has moved on, there is nothing to show. */
    if (ev->seq && s->conn) tern_client_ack(s->conn, ev->seq);
    return;
  }
  tern_buf text = {0}, longtext = {0};
  /* e2e_type stays set on what decrypted: the lines show a lock for it. */
  env->media_ref = (tern_str){0};
  if (rc == 0) {
    const char *body = in.body;
    if (in.has_media && strncmp(in.media.mime, "text/plain", 10) == 0) {
      /* A long text, sent as an attachment: shown like any text. This blocks the loop for one
       * download, which a line printer can afford. */
      if (tern_cli_e2e_download(s->c, &in.media, &longtext) == 0) body = tern_buf_cstr(&longtext);
      else body = "[a long encrypted text that could not be downloaded]";
      in.has_media = false;
    }
    if (in.resend_of) tern_buf_printf(&text, "(resent in place of %s) ", in.resend_of);
    if (body) tern_buf_puts(&text, body);
    copy.body = text.len ? tern_buf_cstr(&text) : NULL;
    copy.body_len = text.len;
    if (in.has_media) {
      copy.media_id = in.media.media_id;
      copy.media_mime = in.media.mime;
      copy.media_size = in.media.size;
      copy.media_width = in.media.width;
      copy.media_height = in.media.height;
    }
    env->reply_to = view_of(in.reply_to);
    env->edit_of = view_of(in.edit_of);
    env->reaction_to = view_of(in.reaction_to);
    env->reaction_emoji = view_of(in.reaction_emoji);
  } else {
    env->e2e_type = TERN_CIPHER_NONE; /* no lock on what we could not read */
    tern_buf_printf(&text, "[could not decrypt this message: %s]", err);
    copy.body = tern_buf_cstr(&text);
    copy.body_len = text.len;
    if (s->conn && s->e) tern_cli_e2e_send_decrypt_error(s->conn, &ev->frame.env);
  }
  s->on_event(s, &copy);
  tern_buf_free(&text);
  tern_buf_free(&longtext);
  tern_e2e_inner_free(&in);
}

static void session_quit(session *s, int status) {
  if (!s->quitting) s->status = status;
  s->quitting = true;
  if (s->conn) tern_client_close(s->conn, 0);
}

static void session_stop(session *s) {
  if (s->stopped) return;
  s->stopped = true;
  uv_close((uv_handle_t *)&s->timer, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  if (s->on_closed) s->on_closed(s);
}

static void session_event(tern_client_conn *conn, const tern_client_event *ev, void *arg) {
  session *s = arg;
  switch (ev->type) {
    case TERN_CLIENT_EV_CLOSED: {
      s->conn = NULL;
      if (!s->quitting) {
        s->status = 1;
        if (ev->close_code == 0 && ev->err == UV_ETIMEDOUT)
          tern_cli_complain(s->c, 1, "timed out connecting to %s", s->c->server);
        else if (ev->close_code == 0 && ev->err == -EPROTO)
          tern_cli_complain(s->c, 1, "%s: %s", s->c->server, ev->message);
        else if (ev->close_code == 0)
          tern_cli_complain(s->c, 1, "cannot reach %s: %s", s->c->server, tern_cli_errstr(ev->err));
        else if (ev->close_code == 4001)
          tern_cli_complain(s->c, 1, "the server did not accept our token (4001): run tern login again");
        else if (ev->close_code == 4002)
          tern_cli_complain(s->c, 1, "this device was logged out (4002); run tern login again");
        else
          tern_cli_complain(s->c, 1, "connection closed by the server: %u (%s)%s%s", ev->close_code,
                   tern_client_close_code_name(ev->close_code)[0] ? tern_client_close_code_name(ev->close_code)
                                                                  : "unknown",
                   ev->message[0] ? ": " : "", ev->message);
      }
      session_stop(s);
      return;
    }
    case TERN_CLIENT_EV_ERROR:
      if (strcmp(ev->code, "unauthorized") == 0) {
        tern_cli_complain(s->c, 1, "the server did not accept our token (%s); run tern login again", ev->message);
        s->status = 1;
        s->quitting = true; /* the server closes with 4001 */
        return;
      }
      break;
    case TERN_CLIENT_EV_READY:
      s->ready = true;
      break;
    case TERN_CLIENT_EV_OPEN:
      return;
    case TERN_CLIENT_EV_DECRYPT_ERROR:
      if (s->e && s->conn && tern_cli_e2e_resend(s->c, s->conn, s->e, &ev->frame.env) == 0)
        fprintf(stderr, "tern: %s: sent %s again to %s, on a new session\n", s->c->cmd,
                ev->msg_id ? ev->msg_id : "?", ev->from ? ev->from : "?");
      break;
    case TERN_CLIENT_EV_MSG:
      if (ev->frame.env.e2e_type != TERN_CIPHER_NONE) {
        session_e2e_msg(s, ev);
        return;
      }
      break;
    default:
      break;
  }
  s->on_event(s, ev);
}

static void session_on_timer(uv_timer_t *t) {
  session *s = t->data;
  if (s->on_timeout) s->on_timeout(s);
  else session_quit(s, 0);
}

static void session_on_signal(uv_signal_t *sig, int signum) {
  session *s = sig->data;
  if (s->quitting && s->conn) {
    tern_client_abort(s->conn); /* a second Ctrl-C: do not wait for the server */
    return;
  }
  session_quit(s, 0);
}

/* Creates the loop, the context, the timer and the signal handlers. */
static void session_setup(session *s) {
  uv_loop_init(&s->loop);
  tern_client_options o = {.ca_file = getenv("TERN_CA_FILE")};
  s->client = tern_client_new(&s->loop, &o);
  uv_timer_init(&s->loop, &s->timer);
  uv_signal_init(&s->loop, &s->sigint);
  uv_signal_init(&s->loop, &s->sigterm);
  s->timer.data = s->sigint.data = s->sigterm.data = s;
}

/* Connects, runs the loop until everything is closed, and cleans up; returns the exit status. */
static int session_go(session *s, int64_t timeout_ms) {
  tern_client_conn_options o = {
      .url = &s->c->url, .token = s->c->creds.token, .on_event = session_event, .arg = s};
  int rc = tern_client_connect(s->client, &o, &s->conn);
  if (rc < 0) {
    s->status = tern_cli_complain(s->c, 1, "cannot connect to %s: %s", s->c->server, tern_cli_errstr(rc));
    session_stop(s);
  } else {
    uv_signal_start(&s->sigint, session_on_signal, SIGINT);
    uv_signal_start(&s->sigterm, session_on_signal, SIGTERM);
    if (timeout_ms > 0) uv_timer_start(&s->timer, session_on_timer, (uint64_t)timeout_ms, 0);
  }
  uv_run(&s->loop, UV_RUN_DEFAULT);
  tern_client_free(s->client);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  tern_e2e_close(s->e);
  s->e = NULL;
  return s->status;
}

static int session_run(session *s, int64_t timeout_ms) {
  session_setup(s);
  return session_go(s, timeout_ms);
}

/* ---- send ---- */

typedef struct send_state {
  const char *to;            /* recipient, or NULL for a group */
  tern_cli_group_ref group;  /* the group (--group), when to is NULL */
  const char *text;          /* body, or NULL (an image without a caption) */
  size_t len;
  char id[TERN_CLIENT_ID_SIZE]; /* our client id */
  char media_id[64];         /* the uploaded image, "" when none */
  bool sent;                 /* the answer arrived */
  tern_e2e *e;               /* end-to-end state when the send is encrypted, else NULL */
  tern_cli_targets t;        /* the devices it goes to (with e) */
  tern_e2e_inner in;         /* what goes inside (with e); points into text and media */
  int fixes;                 /* devices_changed rounds so far */
  /* PROTOCOL.md 15: at most one action, and a reply_to beside a plain message. Encrypted,
   * they go inside (in), except the delete, which is always sent in plaintext. */
  const char *reply_to;      /* --reply */
  const char *reaction_to;   /* tern react: the message, and emoji ("" removes) */
  const char *emoji;
  const char *edit_of;       /* tern edit */
  const char *delete_of;     /* tern delete */
} send_state;

#define E2E_FIX_MAX 3            /* devices_changed rounds before giving up */
#define E2E_INLINE_MAX (32u << 10) /* longer texts go as an encrypted attachment */

/* "✓ sent to 2 of 3 members of Trip (missed: carol)": on stderr, beside the msg_id on stdout,
 * so that scripts still read the id alone. The other members are those it reached
 * (recipients) and those all of whose devices missed it (skipped). */
static void print_group_sent(const send_state *st, const tern_client_event *ev) {
  const tern_event *f = &ev->frame;
  if (!f->has_recipients) {
    fprintf(stderr, "✓ sent to %s\n", st->group.name);
    return;
  }
  tern_buf b = {0};
  unsigned long long others = (unsigned long long)(f->recipients + f->skipped.n);
  tern_buf_printf(&b, "✓ sent to %llu of %llu member%s of %s", (unsigned long long)f->recipients, others,
                  others == 1 ? "" : "s", st->group.name);
  if (f->skipped.n) {
    tern_buf_puts(&b, " (missed, their inboxes are full: ");
    for (size_t i = 0; i < f->skipped.n; i++) {
      tern_str u = tern_strs_at(&f->skipped, i);
      tern_buf_printf(&b, "%s%.*s", i ? ", " : "", (int)u.n, u.p ? u.p : "?");
    }
    tern_buf_putc(&b, ')');
  }
  fprintf(stderr, "%s\n", tern_buf_cstr(&b));
  tern_buf_free(&b);
}

/* Sends (or sends again, with the same id) the message: encrypted for every target when
 * st->e is set, else in plaintext. */
static void send_now(session *s) {
  send_state *st = s->data;
  int rc;
  if (st->e) {
    tern_frame f;
    tern_frame_error ferr = {0};
    rc = tern_cli_e2e_frame(st->e, &st->t, st->id, st->to, st->to ? NULL : st->group.group_id, &st->in,
                            st->in.has_media ? st->in.media.media_id : NULL, &f);
    if (rc == 0) {
      rc = tern_client_send_frame(s->conn, &f, &ferr);
      tern_cli_e2e_frame_free(&f);
      if (rc == -EINVAL) {
        tern_cli_complain(s->c, 1, "cannot send: %s", ferr.message);
        session_quit(s, 1);
        return;
      }
    }
  } else if (st->reply_to || st->reaction_to || st->edit_of || st->delete_of) {
    tern_frame f = {.type = TERN_FRAME_SEND,
                    .id = st->id,
                    .to = (char *)st->to,
                    .to_raw = (char *)st->to,
                    .group_id = st->to ? NULL : st->group.group_id,
                    .body = st->len ? (char *)st->text : NULL,
                    .body_len = st->len,
                    .media_id = st->media_id[0] ? st->media_id : NULL,
                    .reply_to = (char *)st->reply_to,
                    .reaction_to = (char *)st->reaction_to,
                    .emoji = (char *)st->emoji,
                    .edit_of = (char *)st->edit_of,
                    .delete_of = (char *)st->delete_of};
    tern_frame_error ferr = {0};
    rc = tern_client_send_frame(s->conn, &f, &ferr);
    if (rc == -EINVAL) {
      tern_cli_complain(s->c, 2, "cannot send: %s", ferr.message);
      session_quit(s, 2);
      return;
    }
  } else {
    const char *media = st->media_id[0] ? st->media_id : NULL;
    rc = st->to ? tern_client_send(s->conn, st->id, st->to, st->text, st->len, media)
                : tern_client_send_group(s->conn, st->id, st->group.group_id, st->text, st->len, media);
  }
  if (rc < 0) {
    tern_cli_complain(s->c, 1, "cannot send: %s", tern_cli_errstr(rc));
    session_quit(s, 1);
  }
}

static void send_fixed(void *arg, int err) {
  session *s = arg;
  if (s->quitting || !s->conn) return;
  if (err) tern_cli_complain(s->c, 1, "fetching the keys of new devices: %s", tern_cli_errstr(err));
  send_now(s);
}

static void send_event(session *s, const tern_client_event *ev) {
  send_state *st = s->data;
  if (ev->type == TERN_CLIENT_EV_READY) {
    tern_client_new_id(st->id);
    send_now(s);
  } else if (ev->type == TERN_CLIENT_EV_SENT && ev->id && strcmp(ev->id, st->id) == 0) {
    st->sent = true;
    if (st->e && ev->msg_id) {
      /* Kept for a resend should a device fail to decrypt it (decrypt_error). */
      tern_buf inner = {0};
      tern_e2e_inner_encode(&st->in, &inner);
      tern_e2e_remember_sent(st->e, ev->msg_id, st->to ? st->to : st->group.group_id, !st->to, inner.data,
                             inner.len);
      tern_buf_free(&inner);
    }
    printf("%s\n", ev->msg_id ? ev->msg_id : "");
    if (!st->reaction_to && !st->delete_of) tern_cli_msgs_note(s->c, ev->msg_id, st->to, st->to ? NULL : st->group.group_id);
    if (!st->to) print_group_sent(st, ev);
    else if (isatty(2)) fprintf(stderr, "✓ sent to %s%s\n", st->to, st->e ? " (end-to-end encrypted 🔒)" : "");
    session_quit(s, 0);
  } else if (ev->type == TERN_CLIENT_EV_ERROR && ev->id && strcmp(ev->id, st->id) == 0 && st->e &&
             strcmp(ev->code, "devices_changed") == 0 && st->fixes < E2E_FIX_MAX) {
    /* Someone logged in or out meanwhile: fix the device list and send again, same id. */
    st->fixes++;
    tern_cli_e2e_fix(s->c, s->client, st->e, &st->t, &ev->frame, send_fixed, s);
  } else if (ev->type == TERN_CLIENT_EV_ERROR && ev->id && strcmp(ev->id, st->id) == 0 && st->e &&
             strcmp(ev->code, "no_keys") == 0 && !s->c->e2e && !st->in.has_media) {
    fprintf(stderr, "tern: %s: %s has no end-to-end keys any more: sending in plaintext\n", s->c->cmd,
            st->to ? st->to : st->group.name);
    tern_e2e_close(st->e);
    st->e = NULL;
    send_now(s);
  } else if (ev->type == TERN_CLIENT_EV_ERROR && (!ev->id || strcmp(ev->id, st->id) == 0)) {
    if (ev->user) tern_cli_complain(s->c, 1, "%s: %s (%s)", ev->user, ev->message, ev->code);
    else tern_cli_complain(s->c, 1, "%s (%s)", ev->message, ev->code);
    if (ev->id || !s->ready) session_quit(s, 1);
    else if (strcmp(ev->code, "bad_request") == 0) session_quit(s, 1);
  }
}

static void send_timeout(session *s) {
  tern_cli_complain(s->c, 1, "no answer from %s in time", s->c->server);
  session_quit(s, 1);
}

#define UPLOAD_MAX (256u << 20) /* larger files are refused before reading them */
#define UPLOAD_TIMEOUT_MS 120000 /* an upload gets at least this long */

/* Reads an image file (send --image, profile --avatar) into *bytes (the caller frees it)
 * with its type from the bytes. Returns 0 or an exit status. */
static int read_image(tern_cli *c, const char *path, char **bytes_out, size_t *len_out, const char **mime_out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return tern_cli_complain(c, 2, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return tern_cli_complain(c, 2, "%s is not a regular file", path);
  }
  if (sb.st_size == 0 || (uint64_t)sb.st_size > UPLOAD_MAX) {
    close(fd);
    return tern_cli_complain(c, 2, "%s: %s", path, sb.st_size == 0 ? "empty file" : "too large to upload");
  }
  size_t len = (size_t)sb.st_size, got = 0;
  char *bytes = tern_malloc(len);
  while (got < len) {
    ssize_t r = read(fd, bytes + got, len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != len) {
    tern_free(bytes);
    return tern_cli_complain(c, 1, "cannot read %s", path);
  }
  /* The type comes from the bytes, not the name: the server checks them against it anyway. */
  const char *mime = tern_client_sniff_image(bytes, len);
  if (!mime) {
    tern_free(bytes);
    return tern_cli_complain(c, 2, "%s is not a JPEG, PNG, WebP or GIF image", path);
  }
  *bytes_out = bytes;
  *len_out = len;
  *mime_out = mime;
  return 0;
}

/* Reads the image file, uploads it and fills st->media_id. Returns 0 or an exit status. */
static int upload_image(tern_cli *c, send_state *st) {
  char *bytes;
  size_t len;
  const char *mime;
  int rr = read_image(c, c->image, &bytes, &len, &mime);
  if (rr) return rr;
  if (st->e) {
    /* Encrypted: the server gets an opaque blob; type and key go inside the message. */
    int st2 = tern_cli_e2e_upload(c, bytes, len, mime, &st->in.media);
    if (st2 == 0) tern_client_image_size(bytes, len, &st->in.media.width, &st->in.media.height);
    tern_free(bytes);
    if (st2) return st2;
    st->in.has_media = true;
    if (isatty(2))
      fprintf(stderr, "uploaded %s encrypted: %s, %zu bytes (media_id %s)\n", c->image, mime, len,
              st->in.media.media_id);
    return 0;
  }
  tern_cli_sync s;
  tern_cli_sync_begin_timeout(&s, c->timeout_ms > UPLOAD_TIMEOUT_MS ? c->timeout_ms : UPLOAD_TIMEOUT_MS);
  int rc = tern_client_upload_media(s.c, &c->url, c->creds.token, mime, bytes, len, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  tern_free(bytes);
  tern_client_media md;
  if (!s.r.ok) {
    int st2 = tern_cli_http_failed(c, &s.r);
    tern_client_response_free(&s.r);
    return st2;
  }
  rc = tern_client_parse_media(&s.r, &md);
  tern_client_response_free(&s.r);
  if (rc < 0) return tern_cli_complain(c, 1, "%s answered the upload without a media object", c->server);
  snprintf(st->media_id, sizeof st->media_id, "%s", md.media_id);
  if (isatty(2))
    fprintf(stderr, "uploaded %s: %s %lld×%lld, %lld bytes (media_id %s)\n", c->image, md.mime, (long long)md.width,
            (long long)md.height, (long long)md.size, md.media_id);
  return 0;
}

static void send_state_free(send_state *st) {
  tern_e2e_close(st->e);
  st->e = NULL;
  tern_cli_targets_free(&st->t);
}

/* Decides whether the send is encrypted: every recipient has keys (PROTOCOL.md 11). Fills
 * st->e, st->t and st->in, or leaves st->e NULL for plaintext. Returns 0 or an exit status
 * (--e2e when it cannot be encrypted). */
static int send_prepare_e2e(tern_cli *c, send_state *st) {
  st->e = tern_cli_e2e_load(c, !c->e2e);
  if (!st->e) {
    if (c->e2e) return tern_cli_complain(c, 1, "--e2e: this device cannot encrypt on %s", c->server);
    return 0;
  }
  char **users = NULL;
  size_t nusers = 0;
  tern_client_group g = {0};
  if (st->to) {
    users = tern_calloc(1, sizeof *users);
    users[nusers++] = tern_strdup(st->to);
  } else {
    tern_cli_sync s;
    tern_cli_sync_begin(&s);
    int rc = tern_client_group_get(s.c, &c->url, c->creds.token, st->group.group_id, tern_cli_sync_cb, &s);
    tern_cli_sync_end(&s, rc);
    if (!s.r.ok || tern_client_parse_group(&s.r, &g) < 0) {
      /* Not ours to answer: the send itself gets the server's word for it (no_such_group). */
      int st2 = c->e2e ? tern_cli_group_refused(c, &s.r) : 0;
      tern_client_response_free(&s.r);
      tern_client_group_free(&g);
      send_state_free(st);
      return st2;
    }
    tern_client_response_free(&s.r);
    users = tern_calloc(g.nmembers + 1, sizeof *users);
    for (size_t i = 0; i < g.nmembers; i++)
      if (strcmp(g.members[i].user, c->creds.user) != 0) users[nusers++] = tern_strdup(g.members[i].user);
    tern_client_group_free(&g);
  }
  int rc = tern_cli_e2e_prepare(c, st->e, (const char *const *)users, nusers, &st->t);
  /* Every recipient needs a device with keys, or some would get nothing readable. */
  const char *keyless = NULL;
  for (size_t i = 0; rc == 0 && i < nusers && !keyless; i++) {
    bool has = false;
    for (size_t k = 0; k < st->t.n && !has; k++) has = strcmp(st->t.v[k].user, users[i]) == 0;
    if (!has) keyless = users[i];
  }
  int status = 0;
  if (rc == -ENOENT) {
    /* An unknown user: the server says so (no_such_user), nothing needs hiding. */
    if (c->e2e) status = tern_cli_complain(c, 1, "--e2e: no such user");
    send_state_free(st);
  } else if (rc == 0 && !keyless && st->t.n == 0) {
    /* Nobody to encrypt for (a group of one, no other device of ours): nothing to hide. */
    send_state_free(st);
  } else if (rc < 0 || keyless) {
    if (rc < 0) {
      /* Never a downgrade for a failure (a rate limit, the network): plaintext is only for a
       * recipient who has no keys. */
      if (rc == -EAGAIN) status = tern_cli_complain(c, 1, "cannot fetch the recipients' keys: rate limited, try again later");
      else if (rc == -EPROTO) status = tern_cli_complain(c, 1, "cannot fetch the recipients' keys: %s refused", c->server);
      else status = tern_cli_complain(c, 1, "cannot reach %s: %s", c->server, tern_cli_errstr(rc));
    } else if (c->e2e) {
      status = tern_cli_complain(c, 1, "--e2e: %s has no end-to-end keys (no E2E-capable device)", keyless);
    } else {
      /* The default (docs/cli.md): say so, and send as before. */
      fprintf(stderr, "tern: %s: %s has no end-to-end keys: sending in plaintext\n", c->cmd, keyless);
    }
    send_state_free(st);
  } else {
    st->in.body = st->len ? (char *)st->text : NULL;
    st->in.group_id = st->to ? NULL : st->group.group_id;
    st->in.reply_to = (char *)st->reply_to;
    st->in.edit_of = (char *)st->edit_of;
    st->in.reaction_to = (char *)st->reaction_to;
    st->in.reaction_emoji = (char *)st->emoji;
  }
  tern_e2e_strv_free(users, nusers);
  return status;
}

/* A text too long for one frame: an encrypted text/plain attachment, nothing in body. */
static int send_long_text(tern_cli *c, send_state *st) {
  if (st->in.has_media) return tern_cli_complain(c, 2, "a caption that long does not fit with an encrypted image");
  int rc = tern_cli_e2e_upload(c, st->text, st->len, "text/plain; charset=utf-8", &st->in.media);
  if (rc) return rc;
  st->in.has_media = true;
  st->in.body = NULL;
  return 0;
}

/* Connects, sends st and waits for its answer; returns the exit status. */
static int send_run(tern_cli *c, send_state *st) {
  session s = {.c = c, .on_event = send_event, .on_timeout = send_timeout, .data = st};
  int rc = session_run(&s, c->timeout_ms ? c->timeout_ms : SEND_TIMEOUT_MS);
  send_state_free(st);
  if (rc == 0 && !st->sent) rc = 1;
  return rc;
}

int tern_cli_cmd_send(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv,
                               TERN_CLI_OPT_TIMEOUT | TERN_CLI_OPT_IMAGE | TERN_CLI_OPT_GROUP | TERN_CLI_OPT_E2E |
                                   TERN_CLI_OPT_PLAIN | TERN_CLI_OPT_REPLY,
                               0, 2);
  if (rc) return rc < 0 ? 0 : rc;
  /* USER TEXT, USER --image FILE [TEXT]; --group GROUP TEXT, --group GROUP --image FILE [TEXT]. */
  int want = (c.group ? 0 : 1) + (c.image ? 0 : 1);
  if (c.npos < want) return tern_cli_complain(&c, 2, "missing arguments (see tern %s --help)", c.cmd);
  if (c.group && c.npos > 1)
    return tern_cli_complain(&c, 2, "unexpected argument '%s' (see tern %s --help)", c.pos[1], c.cmd);
  send_state st = {.to = c.group ? NULL : c.pos[0], .reply_to = c.reply};
  int ntext = c.group ? 0 : 1;
  st.text = c.npos > ntext ? c.pos[ntext] : NULL;
  tern_buf in = {0};
  if (st.text && strcmp(st.text, "-") == 0) {
    char chunk[4096];
    ssize_t r;
    while ((r = read(0, chunk, sizeof chunk)) != 0) {
      if (r < 0) {
        if (errno == EINTR) continue;
        tern_buf_free(&in);
        return tern_cli_complain(&c, 1, "cannot read stdin: %s", strerror(errno));
      }
      tern_buf_append(&in, chunk, (size_t)r);
      if (in.len > 1u << 20) {
        tern_buf_free(&in);
        return tern_cli_complain(&c, 2, "the message on stdin is too long");
      }
    }
    while (in.len && (in.data[in.len - 1] == '\n' || in.data[in.len - 1] == '\r')) in.len--;
    st.text = tern_buf_cstr(&in);
  }
  st.len = st.text ? strlen(st.text) : 0;
  if (!st.len && !c.image) {
    tern_buf_free(&in);
    return tern_cli_complain(&c, 2, "empty message");
  }
  if (!st.len) st.text = NULL; /* an image without a caption */
  if (c.e2e && c.plain) {
    tern_buf_free(&in);
    return tern_cli_complain(&c, 2, "--e2e and --plain contradict each other");
  }
  if ((rc = tern_cli_need_login(&c)) || (c.group && (rc = tern_cli_group_resolve(&c, c.group, &st.group))) ||
      (!c.plain && (rc = send_prepare_e2e(&c, &st))) || (c.image && (rc = upload_image(&c, &st))) ||
      (st.e && st.len > E2E_INLINE_MAX && (rc = send_long_text(&c, &st)))) {
    tern_buf_free(&in);
    send_state_free(&st);
    return rc;
  }
  rc = send_run(&c, &st);
  tern_buf_free(&in);
  return rc;
}

/* ---- react, edit, delete (PROTOCOL.md 15) ---- */

/* Where an action's message is: --to USER or --group GROUP, else the conversation this device
 * saw it in (msgs.c). user holds the name for st->to. Returns 0 or an exit status. */
static int action_target(tern_cli *c, const char *msg_id, send_state *st, char *user, size_t ucap) {
  if (c->to && c->group) return tern_cli_complain(c, 2, "--to and --group contradict each other");
  if (c->to) {
    snprintf(user, ucap, "%s", c->to);
    st->to = user;
    return 0;
  }
  if (c->group) return tern_cli_group_resolve(c, c->group, &st->group);
  char group[TERN_CLIENT_GROUP_ID_MAX + 1];
  if (tern_cli_msgs_find(c, msg_id, user, ucap, group, sizeof group) < 0)
    return tern_cli_complain(c, 2,
                             "%s is no message this device has seen; name its conversation with --to USER or --group GROUP",
                             msg_id);
  if (*group) return tern_cli_group_resolve(c, group, &st->group);
  st->to = user;
  return 0;
}

/* react, edit and delete: one positional msg_id, then (react, edit) a second argument. */
static int action_cmd(int argc, char **argv, char kind) {
  tern_cli c;
  unsigned opts = TERN_CLI_OPT_TIMEOUT | TERN_CLI_OPT_GROUP | TERN_CLI_OPT_TO;
  if (kind != 'd') opts |= TERN_CLI_OPT_E2E | TERN_CLI_OPT_PLAIN; /* a delete is never encrypted */
  int npos = kind == 'd' ? 1 : 2;
  int rc = tern_cli_parse_args(&c, argc, argv, opts, npos, npos);
  if (rc) return rc < 0 ? 0 : rc;
  const char *id = c.pos[0];
  if (c.e2e && c.plain) return tern_cli_complain(&c, 2, "--e2e and --plain contradict each other");
  send_state st = {0};
  if (kind == 'r') {
    if (strlen(c.pos[1]) > 32) return tern_cli_complain(&c, 2, "a reaction is at most 32 bytes (one emoji)");
    st.reaction_to = id;
    st.emoji = c.pos[1];
  } else if (kind == 'e') {
    if (!*c.pos[1]) return tern_cli_complain(&c, 2, "empty text (to take a message back: tern delete)");
    st.edit_of = id;
    st.text = c.pos[1];
    st.len = strlen(st.text);
  } else {
    st.delete_of = id;
  }
  char user[TERN_CLIENT_USER_MAX + 8];
  if ((rc = tern_cli_need_login(&c)) || (rc = action_target(&c, id, &st, user, sizeof user))) return rc;
  /* Reactions and edits go inside the ciphertext when the conversation is encrypted; a delete
   * stays outside, so that the server can act on it (PROTOCOL.md 15). */
  if (kind != 'd' && !c.plain && (rc = send_prepare_e2e(&c, &st))) return rc;
  return send_run(&c, &st);
}

int tern_cli_cmd_react(int argc, char **argv) { return action_cmd(argc, argv, 'r'); }
int tern_cli_cmd_edit(int argc, char **argv) { return action_cmd(argc, argv, 'e'); }
int tern_cli_cmd_delete(int argc, char **argv) { return action_cmd(argc, argv, 'd'); }

/* ---- profile ---- */

static void print_profile(const cJSON *j) {
  const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user");
  const cJSON *dn = cJSON_GetObjectItemCaseSensitive(j, "display_name");
  const cJSON *av = cJSON_GetObjectItemCaseSensitive(j, "avatar");
  char name[TERN_CLIENT_DISPLAY_NAME_MAX * 4 + 1];
  tern_cli_printable(cJSON_IsString(dn) ? dn->valuestring : "", name, sizeof name);
  printf("%s\n", cJSON_IsString(user) ? user->valuestring : "?");
  printf("display name: %s\n", cJSON_IsString(dn) ? name : "(none)");
  printf("avatar: %s\n", cJSON_IsString(av) ? av->valuestring : "(none)");
}

int tern_cli_cmd_profile(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, TERN_CLI_OPT_NAME | TERN_CLI_OPT_AVATAR | TERN_CLI_OPT_NO_AVATAR, 0, 1);
  if (rc) return rc < 0 ? 0 : rc;
  bool set = c.name || c.avatar || c.no_avatar;
  if (set && c.npos) return tern_cli_complain(&c, 2, "only your own profile can be changed (no USER with --name or --avatar)");
  if (c.avatar && c.no_avatar) return tern_cli_complain(&c, 2, "--avatar and --no-avatar contradict each other");
  if (c.name && strlen(c.name) > TERN_CLIENT_DISPLAY_NAME_MAX)
    return tern_cli_complain(&c, 2, "--name: at most %d bytes", TERN_CLIENT_DISPLAY_NAME_MAX);
  if ((rc = tern_cli_need_login(&c))) return rc;
  char avatar_id[64] = "";
  if (c.avatar) {
    char *bytes;
    size_t len;
    const char *mime;
    if ((rc = read_image(&c, c.avatar, &bytes, &len, &mime))) return rc;
    tern_cli_sync s;
    tern_cli_sync_begin_timeout(&s, UPLOAD_TIMEOUT_MS);
    rc = tern_client_upload_avatar(s.c, &c.url, c.creds.token, mime, bytes, len, tern_cli_sync_cb, &s);
    tern_cli_sync_end(&s, rc);
    tern_free(bytes);
    if ((rc = tern_cli_sync_failed(&c, &s))) return rc;
    tern_client_media md;
    rc = tern_client_parse_media(&s.r, &md);
    tern_client_response_free(&s.r);
    if (rc < 0) return tern_cli_complain(&c, 1, "%s answered the upload without a media object", c.server);
    snprintf(avatar_id, sizeof avatar_id, "%s", md.media_id);
  }
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  if (set)
    rc = tern_client_profile_set(s.c, &c.url, c.creds.token, c.name, avatar_id[0] ? avatar_id : NULL, c.no_avatar,
                                 tern_cli_sync_cb, &s);
  else if (c.npos)
    rc = tern_client_whois(s.c, &c.url, c.creds.token, c.pos[0], tern_cli_sync_cb, &s);
  else
    rc = tern_client_me(s.c, &c.url, c.creds.token, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  if (!set && c.npos && s.r.status == 404) {
    tern_client_response_free(&s.r);
    return tern_cli_complain(&c, 1, "no such user: %s", c.pos[0]);
  }
  if ((rc = tern_cli_sync_failed(&c, &s))) return rc;
  print_profile(s.r.json);
  tern_client_response_free(&s.r);
  return 0;
}

/* ---- fetch ---- */

typedef struct fetch_state {
  int fd;              /* where the bytes go */
  EVP_MD_CTX *sha;     /* SHA-256 of what was written */
  uint64_t bytes;      /* written so far */
  int err;             /* errno of a failed write */
} fetch_state;

/* The CLI's loop is its own: a blocking write to a local file holds up nothing else. */
static int fetch_body(const char *p, size_t n, void *arg) {
  fetch_state *f = arg;
  EVP_DigestUpdate(f->sha, p, n);
  f->bytes += n;
  while (n) {
    ssize_t w = write(f->fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      f->err = errno;
      return -EIO;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* An attachment that came end-to-end encrypted (its key is in this device's state): fetched
 * whole, checked against the SHA-256 inside the message, decrypted, and written like any
 * download. Returns the exit status, or -1 when id is no attachment we hold a key for. */
static int fetch_encrypted(tern_cli *c, const char *id) {
  char dir[4200], err[256];
  tern_e2e *e = NULL;
  tern_e2e_media m;
  if (tern_cli_e2e_dir(c, dir, sizeof dir) < 0 || tern_e2e_open(dir, &e, err, sizeof err) < 0) return -1;
  int found = tern_e2e_find_media(e, id, &m);
  tern_e2e_close(e);
  if (found < 0) return -1;
  tern_buf pt = {0};
  int status = tern_cli_e2e_download(c, &m, &pt);
  if (status) {
    tern_buf_free(&pt);
    return status;
  }
  bool to_stdout = strcmp(c->output, "-") == 0;
  char tmp[4200] = "";
  int fd = 1;
  if (!to_stdout) {
    if (strlen(c->output) > 4000) return tern_cli_complain(c, 2, "-o: path too long");
    snprintf(tmp, sizeof tmp, "%s.tern-XXXXXX", c->output);
    fd = mkstemp(tmp);
    if (fd < 0) {
      tern_buf_free(&pt);
      return tern_cli_complain(c, 1, "cannot create %s: %s", tmp, strerror(errno));
    }
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
  }
  for (size_t off = 0; off < pt.len && status == 0;) {
    ssize_t w = write(fd, pt.data + off, pt.len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) status = tern_cli_complain(c, 1, "cannot write %s: %s", to_stdout ? "stdout" : tmp, strerror(errno));
    else off += (size_t)w;
  }
  if (!to_stdout) {
    if (status == 0 && fsync(fd) < 0) status = tern_cli_complain(c, 1, "cannot write %s: %s", tmp, strerror(errno));
    close(fd);
    if (status == 0 && rename(tmp, c->output) < 0)
      status = tern_cli_complain(c, 1, "cannot rename %s to %s: %s", tmp, c->output, strerror(errno));
    if (status != 0) unlink(tmp);
  }
  if (status == 0 && isatty(2) && !to_stdout)
    fprintf(stderr, "saved %zu bytes (%s, decrypted) to %s\n", pt.len, m.mime, c->output);
  tern_buf_free(&pt);
  return status;
}

int tern_cli_cmd_fetch(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, TERN_CLI_OPT_OUTPUT | TERN_CLI_OPT_THUMB | TERN_CLI_OPT_TIMEOUT, 1, 1);
  if (rc) return rc < 0 ? 0 : rc;
  const char *id = c.pos[0];
  size_t idl = strlen(id);
  bool id_ok = idl > 0 && idl < 64;
  for (size_t i = 0; i < idl; i++)
    if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9'))) id_ok = false;
  if (!id_ok) return tern_cli_complain(&c, 2, "'%s' is not a media id", id);
  if (!c.output || !*c.output) return tern_cli_complain(&c, 2, "-o FILE is required (\"-\" writes to stdout)");
  if ((rc = tern_cli_need_login(&c))) return rc;
  if (!c.thumb) {
    int st2 = fetch_encrypted(&c, id);
    if (st2 >= 0) return st2;
  }

  /* Into a temporary file beside FILE, renamed once complete: never a half image at FILE. */
  bool to_stdout = strcmp(c.output, "-") == 0;
  char tmp[4200] = "";
  fetch_state f = {.fd = 1};
  if (!to_stdout) {
    if (strlen(c.output) > 4000) return tern_cli_complain(&c, 2, "-o: path too long");
    snprintf(tmp, sizeof tmp, "%s.tern-XXXXXX", c.output);
    f.fd = mkstemp(tmp);
    if (f.fd < 0) return tern_cli_complain(&c, 1, "cannot create %s: %s", tmp, strerror(errno));
    mode_t um = umask(0);
    umask(um);
    fchmod(f.fd, 0666 & ~um);
  }
  f.sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(f.sha, EVP_sha256(), NULL);
  char path[128];
  snprintf(path, sizeof path, "/v1/media/%s%s", id, c.thumb ? "/thumb" : "");
  tern_client_request req = {.method = "GET", .path = path, .token = c.creds.token, .on_body = fetch_body, .body_arg = &f};
  tern_cli_sync s;
  tern_cli_sync_begin_timeout(&s, c.timeout_ms > UPLOAD_TIMEOUT_MS ? c.timeout_ms : UPLOAD_TIMEOUT_MS);
  rc = tern_client_http(s.c, &c.url, &req, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  uint8_t md[32];
  unsigned mdlen = 0;
  EVP_DigestFinal_ex(f.sha, md, &mdlen);
  EVP_MD_CTX_free(f.sha);
  int status = 0;
  if (f.err) {
    status = tern_cli_complain(&c, 1, "cannot write %s: %s", to_stdout ? "stdout" : tmp, strerror(f.err));
  } else if (s.r.status == 404) {
    status = tern_cli_complain(&c, 1, "no media %s for you (unknown, expired, deleted once fetched, or not shared with you)", id);
  } else if (!s.r.ok) {
    status = tern_cli_http_failed(&c, &s.r);
  } else if (!c.thumb && strlen(s.r.etag) == 66) {
    /* The original's ETag is its SHA-256: check that every byte arrived intact. */
    char hex[65];
    tern_hex(hex, md, sizeof md);
    if (strncmp(s.r.etag + 1, hex, 64) != 0) status = tern_cli_complain(&c, 1, "the download does not match its SHA-256");
  }
  tern_client_response_free(&s.r);
  if (!to_stdout) {
    if (status == 0 && fsync(f.fd) < 0) status = tern_cli_complain(&c, 1, "cannot write %s: %s", tmp, strerror(errno));
    close(f.fd);
    if (status == 0 && rename(tmp, c.output) < 0) status = tern_cli_complain(&c, 1, "cannot rename %s to %s: %s", tmp, c.output, strerror(errno));
    if (status != 0) unlink(tmp);
  }
  if (status == 0 && isatty(2) && !to_stdout)
    fprintf(stderr, "saved %llu bytes to %s\n", (unsigned long long)f.bytes, c.output);
  return status;
}

/* ---- listen ---- */

/* What listen knows of a group: its name for the lines, its size for "of M". */
typedef struct listen_group {
  char group_id[TERN_CLIENT_GROUP_ID_MAX + 1];
  char name[128];          /* printable; the id until known */
  int64_t members;         /* -1 until known */
  bool asked;              /* a GET of it was started */
} listen_group;

/* Messages whose receipts listen counts at once; past that the oldest are forgotten (their
 * later receipts then count from zero), so that a listen left running stays small. */
#define LISTEN_TALLIES_MAX 10000

typedef struct listen_state {
  long got;               /* messages printed */
  uint64_t last_seq;      /* highest envelope seq seen: envelopes at or below are repeats */
  bool synced;            /* the stored envelopes are through: events now are news */
  listen_group *groups;   /* every group seen, from the list fetched at the start and since */
  size_t ngroups;
  tern_map tallies;       /* msg_id → tern_cli_tally *: receipts of our group messages */
  char **order;           /* the tallies' msg_ids in a ring, oldest at head */
  size_t norder, head;
} listen_state;

static listen_group *listen_group_find(listen_state *st, const char *id) {
  for (size_t i = 0; i < st->ngroups; i++)
    if (strcmp(st->groups[i].group_id, id) == 0) return &st->groups[i];
  return NULL;
}

static listen_group *listen_group_add(listen_state *st, const char *id) {
  listen_group *g = listen_group_find(st, id);
  if (g) return g;
  st->groups = tern_realloc(st->groups, (st->ngroups + 1) * sizeof *st->groups);
  g = &st->groups[st->ngroups++];
  memset(g, 0, sizeof *g);
  snprintf(g->group_id, sizeof g->group_id, "%s", id);
  snprintf(g->name, sizeof g->name, "%s", id);
  g->members = -1;
  return g;
}

static void listen_on_group(tern_client_response *r, void *arg) {
  listen_state *st = arg;
  tern_client_group grp;
  if (tern_client_parse_group(r, &grp) < 0) return; /* it stays unknown: lines show its id */
  listen_group *g = listen_group_add(st, grp.group_id);
  tern_cli_printable(grp.name, g->name, sizeof g->name);
  g->members = (int64_t)grp.nmembers;
  tern_client_group_free(&grp);
}

/* The group with this id, asking the server about it (once) when its size is unknown. The
 * answer comes later; until then lines show the id and counts have no "of M". */
static listen_group *listen_group_learn(session *s, const char *id) {
  listen_state *st = s->data;
  listen_group *g = listen_group_add(st, id);
  if (g->members < 0 && !g->asked && tern_client_group_id_valid(id)) {
    g->asked = true;
    tern_client_group_get(s->client, &s->c->url, s->c->creds.token, id, listen_on_group, st);
  }
  return g;
}

/* Keeps the cache in step with a change. The list fetched at the start already holds every
 * change stored before it, so the stored ones drained at connect change nothing but what the
 * list did not know. */
static void listen_group_event(session *s, const tern_envelope *e) {
  listen_state *st = s->data;
  if (!e->group_id.p) return;
  bool known = listen_group_find(st, e->group_id.p) != NULL;
  listen_group *g = listen_group_add(st, e->group_id.p);
  if (e->event == TERN_GROUP_CREATED && (!known || st->synced)) {
    if (e->name.p) tern_cli_printable(e->name.p, g->name, sizeof g->name);
    g->members = (int64_t)e->users.n;
    return;
  }
  if (!st->synced) return;
  if (e->event == TERN_GROUP_RENAMED && e->name.p) tern_cli_printable(e->name.p, g->name, sizeof g->name);
  if (g->members >= 0 && e->event == TERN_GROUP_ADDED) g->members += (int64_t)e->users.n;
  if (g->members >= 0 && (e->event == TERN_GROUP_REMOVED || e->event == TERN_GROUP_LEFT))
    g->members -= TERN_MIN(g->members, (int64_t)e->users.n);
  if (g->members < 0) listen_group_learn(s, e->group_id.p);
}

/* The tally of one of our group messages, made on its first receipt with the group's size
 * then (the members it reached, as far as listen can tell: sent's count went to the sending
 * process, not to this one). */
static tern_cli_tally *listen_tally(listen_state *st, const char *msg_id, const listen_group *g) {
  tern_cli_tally *t = tern_map_gets(&st->tallies, msg_id);
  if (!t) {
    if (!st->order) st->order = tern_calloc(LISTEN_TALLIES_MAX, sizeof *st->order);
    if (st->norder == LISTEN_TALLIES_MAX) {
      char *old = st->order[st->head];
      tern_cli_tally *gone = tern_map_dels(&st->tallies, old);
      tern_cli_tally_free(gone);
      tern_free(gone);
      tern_free(old);
      st->head = (st->head + 1) % LISTEN_TALLIES_MAX;
      st->norder--;
    }
    t = TERN_NEW(tern_cli_tally);
    t->of = -1;
    tern_map_puts(&st->tallies, msg_id, t);
    st->order[(st->head + st->norder++) % LISTEN_TALLIES_MAX] = tern_strdup(msg_id);
  }
  if (t->of < 0 && g->members > 0) t->of = g->members - 1;
  return t;
}

static void listen_free(listen_state *st) {
  for (size_t i = 0; i < st->norder; i++) {
    char *id = st->order[(st->head + i) % LISTEN_TALLIES_MAX];
    tern_cli_tally *t = tern_map_dels(&st->tallies, id);
    tern_cli_tally_free(t);
    tern_free(t);
    tern_free(id);
  }
  tern_free(st->order);
  tern_map_free(&st->tallies);
  tern_free(st->groups);
}

static void print_ids(const tern_client_event *ev) {
  for (size_t i = 0; i < ev->n_msg_ids; i++) printf("%s%s", i ? " " : "", ev->msg_ids[i]);
}

/* A view's text (proto's decoded strings are NUL-terminated). */
static const char *sv(tern_str s) { return s.p ? s.p : "?"; }

static void print_list(const tern_strs *l) {
  for (size_t i = 0; i < l->n; i++) printf("%s%s", i ? ", " : "", sv(tern_strs_at(l, i)));
}

/* What a v1.1 message carries besides text and media (PROTOCOL.md 15), before its text. The
 * ids come from the network: shown through tern_cli_printable. */
static void msg_extras_text(const tern_envelope *e, tern_buf *b) {
  char id[3 * 64 + 1], emoji[4 * 32 + 1];
  /* An encrypted message reaches the lines decrypted (session_e2e_msg), still marked. */
  if (e->e2e_type) tern_buf_puts(b, "🔒 ");
  if (e->reply_to.p) {
    tern_cli_printable(e->reply_to.p, id, sizeof id);
    tern_buf_printf(b, "(reply to %s) ", id);
  }
  if (e->edit_of.p) {
    tern_cli_printable(e->edit_of.p, id, sizeof id);
    tern_buf_printf(b, "(edit of %s) ", id);
  }
  if (e->reaction_to.p) {
    tern_cli_printable(e->reaction_to.p, id, sizeof id);
    tern_cli_printable(e->reaction_emoji.p ? e->reaction_emoji.p : "", emoji, sizeof emoji);
    if (e->reaction_emoji.n) tern_buf_printf(b, "reacted %s to %s", emoji, id);
    else tern_buf_printf(b, "removed a reaction to %s", id);
  }
  if (e->delete_of.p) {
    tern_cli_printable(e->delete_of.p, id, sizeof id);
    tern_buf_printf(b, "deleted %s (This message was deleted)", id);
  }
}

static void print_msg_extras(const tern_envelope *e) {
  tern_buf b = {0};
  msg_extras_text(e, &b);
  if (b.len) fwrite(b.data, 1, b.len, stdout);
  tern_buf_free(&b);
}

/* The conversation a received (or own) message belongs to, noted for react/edit/delete. */
static void note_msg(session *s, const tern_client_event *ev) {
  const tern_envelope *e = &ev->frame.env;
  if (!ev->msg_id || e->reaction_to.p || e->delete_of.p) return;
  const char *me = s->c->creds.user, *from = ev->from ? ev->from : "";
  tern_cli_msgs_note(s->c, ev->msg_id, strcmp(from, me) == 0 ? ev->to : from, ev->group_id);
}

/* "alice: display name "Alice A.", avatar ID" for a profile frame (PROTOCOL.md 15). */
static void profile_text(const tern_client_event *ev, tern_buf *b) {
  char who[3 * 33], name[4 * 64 + 1], av[3 * 64 + 1];
  tern_cli_printable(ev->user ? ev->user : "?", who, sizeof who);
  tern_cli_printable(ev->frame.display_name.p ? ev->frame.display_name.p : "", name, sizeof name);
  tern_cli_printable(ev->frame.avatar.p ? ev->frame.avatar.p : "", av, sizeof av);
  tern_buf_printf(b, "%s changed their profile: ", who);
  if (ev->frame.display_name.p) tern_buf_printf(b, "display name \"%s\"", name);
  else tern_buf_puts(b, "no display name");
  if (ev->frame.avatar.p) tern_buf_printf(b, ", avatar %s", av);
  else tern_buf_puts(b, ", no avatar");
}

/* group: the name to show for a group message's group. */
static void print_msg_line(const tern_client_event *ev, const char *me, bool with_date, const char *group) {
  char when[32];
  tern_cli_format_time(ev->ts, with_date, when, sizeof when);
  const char *from = ev->from ? ev->from : "?";
  if (ev->group_id) printf("[%s] %s → #%s: ", when, from, group ? group : ev->group_id);
  else if (me && strcmp(from, me) == 0) printf("[%s] %s → %s: ", when, from, ev->to ? ev->to : "?");
  else printf("[%s] %s: ", when, from);
  print_msg_extras(&ev->frame.env);
  if (ev->media_id) {
    char img[160];
    tern_client_format_media(ev, img, sizeof img);
    printf("%s%s", img, ev->body ? " " : "");
  }
  if (ev->body) fwrite(ev->body, 1, ev->body_len, stdout);
}

/* A group change ("[time] #Trip: alice added dave") or a decryption failure, one line. */
static void print_envelope_event(session *s, const tern_client_event *ev) {
  char when[32];
  tern_cli_format_time(ev->ts, true, when, sizeof when);
  const tern_envelope *e = &ev->frame.env;
  if (ev->type == TERN_CLIENT_EV_DECRYPT_ERROR) {
    printf("[%s] %s could not decrypt %s (their device %s)\n", when, sv(e->from), sv(e->msg_id), sv(e->from_device));
    return;
  }
  /* The name the group had before the change, except for its creation, which names it. */
  if (e->event == TERN_GROUP_CREATED) listen_group_event(s, e);
  const listen_group *g = e->group_id.p ? listen_group_add(s->data, e->group_id.p) : NULL;
  tern_buf b = {0};
  tern_cli_group_event_text(e, g ? g->name : "?", &b);
  printf("[%s] #%s: %s\n", when, g ? g->name : "?", tern_buf_cstr(&b));
  tern_buf_free(&b);
  if (e->event != TERN_GROUP_CREATED) listen_group_event(s, e);
}

/* A group receipt. For our messages, each message's count so far, the ids with the same
 * count on one line: "✓✓ delivered to 2 of 2 in #Trip (carol): ID ID". */
static void print_group_receipt(session *s, const tern_client_event *ev) {
  listen_state *st = s->data;
  const tern_envelope *e = &ev->frame.env;
  const listen_group *g = listen_group_learn(s, ev->group_id);
  if (!ev->from || strcmp(ev->from, s->c->creds.user) != 0) {
    /* Someone else's messages: only a read on another device of ours comes here. */
    printf("read on another device of yours (in #%s, from %s): ", g->name, ev->from ? ev->from : "?");
    print_ids(ev);
    printf("\n");
    return;
  }
  size_t n = ev->n_msg_ids, nl = 0;
  tern_buf *texts = tern_calloc(n ? n : 1, sizeof *texts), *ids = tern_calloc(n ? n : 1, sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    tern_cli_tally *t = listen_tally(st, ev->msg_ids[i], g);
    tern_cli_tally_add(t, &e->by_list, ev->read);
    tern_buf text = {0};
    tern_cli_tally_text(t, ev->read ? TERN_CLI_TALLY_READ : TERN_CLI_TALLY_DELIVERED, &text);
    size_t k = 0;
    while (k < nl && strcmp(tern_buf_cstr(&texts[k]), tern_buf_cstr(&text)) != 0) k++;
    if (k == nl) texts[nl++] = text;
    else tern_buf_free(&text);
    tern_buf_printf(&ids[k], "%s%s", ids[k].len ? " " : "", ev->msg_ids[i]);
  }
  for (size_t k = 0; k < nl; k++) {
    printf("%s in #%s (", tern_buf_cstr(&texts[k]), g->name);
    print_list(&e->by_list);
    printf("): %s\n", tern_buf_cstr(&ids[k]));
    tern_buf_free(&texts[k]);
    tern_buf_free(&ids[k]);
  }
  tern_free(texts);
  tern_free(ids);
}

static void listen_event(session *s, const tern_client_event *ev) {
  listen_state *st = s->data;
  const char *me = s->c->creds.user;
  switch (ev->type) {
    case TERN_CLIENT_EV_READY:
      if (isatty(2)) fprintf(stderr, "listening as %s on %s (Ctrl-C to stop)\n", ev->user, s->c->server);
      /* the USERs: their profile changes come to watchers only */
      if (s->c->npos) tern_client_watch(s->conn, (const char *const *)s->c->pos, (size_t)s->c->npos);
      break;
    case TERN_CLIENT_EV_SYNCED:
      st->synced = true;
      break;
    case TERN_CLIENT_EV_MSG:
    case TERN_CLIENT_EV_RECEIPT: {
      if (s->quitting) return; /* past --count: leave the rest for next time */
      bool repeat = ev->seq && ev->seq <= st->last_seq;
      if (ev->seq > st->last_seq) st->last_seq = ev->seq;
      if (!repeat) {
        if (ev->type == TERN_CLIENT_EV_MSG) {
          print_msg_line(ev, me, true, ev->group_id ? listen_group_learn(s, ev->group_id)->name : NULL);
          printf(" (msg_id %s)\n", ev->msg_id ? ev->msg_id : "?");
          note_msg(s, ev);
          st->got++;
        } else if (ev->group_id) {
          print_group_receipt(s, ev);
        } else if (ev->by && strcmp(ev->by, me) == 0) {
          printf("read on another device of yours (from %s): ", ev->from ? ev->from : "?");
          print_ids(ev);
          printf("\n");
        } else {
          printf(ev->read ? "read by %s: " : "✓✓ delivered to %s: ", ev->by ? ev->by : "?");
          print_ids(ev);
          printf("\n");
        }
        fflush(stdout);
      }
      if (ev->seq) tern_client_ack(s->conn, ev->seq);
      if (s->c->count && st->got >= s->c->count) session_quit(s, 0);
      break;
    }
    case TERN_CLIENT_EV_GROUP:
    case TERN_CLIENT_EV_DECRYPT_ERROR: {
      bool repeat = ev->seq && ev->seq <= st->last_seq;
      if (ev->seq > st->last_seq) st->last_seq = ev->seq;
      if (!repeat) {
        print_envelope_event(s, ev);
        fflush(stdout);
      }
      if (ev->seq) tern_client_ack(s->conn, ev->seq);
      break;
    }
    case TERN_CLIENT_EV_PROFILE: {
      tern_buf b = {0};
      profile_text(ev, &b);
      printf("%s\n", tern_buf_cstr(&b));
      tern_buf_free(&b);
      fflush(stdout);
      break;
    }
    case TERN_CLIENT_EV_UNKNOWN:
      /* Not acked: what could not be read stays on the server for a client that can. */
      if (ev->malformed) tern_cli_complain(s->c, 1, "skipped a malformed %.*s frame: %s", (int)ev->frame.type_name.n,
                                  ev->frame.type_name.p, ev->malformed);
      break;
    case TERN_CLIENT_EV_ERROR:
      tern_cli_complain(s->c, 1, "server error: %s (%s)", ev->message, ev->code);
      break;
    default:
      break;
  }
}

static void listen_timeout(session *s) {
  listen_state *st = s->data;
  if (s->c->count && st->got < s->c->count) {
    tern_cli_complain(s->c, 1, "timed out after %ld of %ld messages", st->got, s->c->count);
    session_quit(s, 1);
  } else {
    session_quit(s, 0);
  }
}

int tern_cli_cmd_listen(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, TERN_CLI_OPT_COUNT | TERN_CLI_OPT_TIMEOUT, 0, TERN_CLI_ANY_POS);
  if (rc) return rc < 0 ? 0 : rc;
  if ((rc = tern_cli_need_login(&c))) return rc;
  setvbuf(stdout, NULL, _IOLBF, 0);
  listen_state st = {0};
  /* The groups' names and sizes, for the lines; without them (an old server, say) lines
   * show ids, and a failure that matters shows on the connection. */
  tern_client_group_list l;
  if (tern_cli_groups_fetch(&c, &l, true) == 0) {
    for (size_t i = 0; i < l.n; i++) {
      listen_group *g = listen_group_add(&st, l.groups[i].group_id);
      tern_cli_printable(l.groups[i].name, g->name, sizeof g->name);
      g->members = l.groups[i].members;
    }
    tern_client_group_list_free(&l);
  }
  session s = {.c = &c, .on_event = listen_event, .on_timeout = listen_timeout, .data = &st};
  s.e = tern_cli_e2e_load(&c, true);
  rc = session_run(&s, c.timeout_ms);
  listen_free(&st);
  return rc;
}

/* ---- chat ---- */

enum { TICK_FAILED = -1, TICK_PENDING = 0, TICK_SENT, TICK_DELIVERED, TICK_READ };

typedef struct outgoing {
  char id[TERN_CLIENT_ID_SIZE]; /* client id */
  char *msg_id;                 /* from sent, or NULL */
  char *text;                   /* what was typed */
  int64_t ts;                   /* when typed, then the server's ts */
  uint64_t line;                /* the number of the output line showing it (TTY) */
  int tick;                     /* TICK_* (in a group: derived from tally) */
  bool sent_frame;              /* the send frame was queued */
  tern_cli_tally tally;         /* in a group: who has it, out of sent's recipients */
} outgoing;

typedef struct chat_state {
  char peer[TERN_CLIENT_USER_MAX + 1]; /* lower-cased; "" in a group */
  tern_cli_group_ref group; /* --group: the group (group_id "" for a 1:1 chat) */
  bool in_group;            /* --group was given */
  char **typing;            /* members shown as typing, until they pause or write */
  size_t ntyping;
  bool tty;                 /* stdin and stdout are terminals: redraw ticks in place */
  outgoing *out;            /* every message typed */
  size_t nout, capout;
  uint64_t lines;           /* output lines printed (TTY bookkeeping) */
  tern_buf line;            /* partial input line */
  uv_tty_t tty_in;          /* stdin when a terminal */
  uv_pipe_t pipe_in;        /* stdin when a pipe or socket */
  uv_stream_t *in;          /* whichever is open, NULL once closed */
  bool in_eof;              /* no more input */
  uv_timer_t reads;         /* sends the pending read receipts once per loop turn */
  char **unread;            /* msg_ids displayed but not yet marked read */
  char **unread_from;       /* their senders (a group's read names one sender at a time) */
  size_t nunread, capunread;
  uint64_t last_seq;        /* highest envelope seq seen */
  bool has_timeout;         /* --timeout given: at EOF, wait for read ticks */
  bool e2e;                 /* messages go end-to-end encrypted, to the devices in t */
  tern_cli_targets t;
  int fixes;                /* devices_changed rounds so far */
} chat_state;

static void chat_check_done(session *s);

static size_t cols_of_terminal(void) {
  struct winsize ws;
  if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

/* The text of an outgoing message's line; color adds the ANSI blue of read ticks. */
static void render_outgoing(chat_state *ch, const outgoing *o, bool color, tern_buf *b) {
  char when[32];
  tern_cli_format_time(o->ts, !ch->tty, when, sizeof when);
  tern_buf_printf(b, "[%s] you: %s ", when, o->text);
  if (ch->in_group && o->tick != TICK_PENDING && o->tick != TICK_FAILED) {
    bool blue = color && o->tick == TICK_READ;
    if (blue) tern_buf_puts(b, "\033[34m");
    tern_cli_tally_text(&o->tally, TERN_CLI_TALLY_TICKS, b);
    if (blue) tern_buf_puts(b, "\033[0m");
    if (!ch->tty && o->msg_id) tern_buf_printf(b, " (msg_id %s)", o->msg_id);
    return;
  }
  switch (o->tick) {
    case TICK_PENDING: tern_buf_puts(b, "…"); break;
    case TICK_SENT: tern_buf_puts(b, "✓"); break;
    case TICK_DELIVERED: tern_buf_puts(b, "✓✓"); break;
    case TICK_READ: tern_buf_puts(b, color ? "\033[34m✓✓\033[0m" : "✓✓ read"); break;
    default: tern_buf_puts(b, "✗ not sent"); break;
  }
  if (!ch->tty && o->msg_id) tern_buf_printf(b, " (msg_id %s)", o->msg_id);
}

static void chat_println(chat_state *ch, const char *text) {
  fputs(text, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  ch->lines++;
}

/* A line that is not a message (presence, typing, a group change): dim on a terminal. */
static void chat_println_dim(chat_state *ch, const char *text) {
  if (!ch->tty) {
    chat_println(ch, text);
    return;
  }
  tern_buf b = {0};
  tern_buf_printf(&b, "\033[2m%s\033[0m", text);
  chat_println(ch, tern_buf_cstr(&b));
  tern_buf_free(&b);
}

/* Shows an outgoing message's current tick. On a terminal the message's own line is
 * redrawn when it is still the last one and fits one row; otherwise a line is printed. */
static void show_outgoing(chat_state *ch, outgoing *o, bool first) {
  tern_buf b = {0};
  if (ch->tty) {
    tern_buf plain = {0};
    render_outgoing(ch, o, false, &plain);
    bool fits = tern_cli_text_width(tern_buf_cstr(&plain)) < cols_of_terminal();
    tern_buf_free(&plain);
    render_outgoing(ch, o, true, &b);
    if (!first && fits && o->line == ch->lines) {
      /* Save the cursor, go up to the line, rewrite it, come back: the user's half-typed
       * input below stays where it is. */
      printf("\0337\033[1A\r\033[2K%s\0338", tern_buf_cstr(&b));
      fflush(stdout);
    } else {
      chat_println(ch, tern_buf_cstr(&b));
      o->line = ch->lines;
    }
  } else if (ch->in_group && o->tally.ndelivered) {
    /* A group message's count changes with each member: "✓ delivered to 1 of 2: hi (msg_id X)". */
    tern_cli_tally_text(&o->tally, TERN_CLI_TALLY_TICKS, &b);
    tern_buf_printf(&b, ": %s (msg_id %s)", o->text, o->msg_id ? o->msg_id : "?");
    chat_println(ch, tern_buf_cstr(&b));
  } else if (o->tick == TICK_SENT || o->tick == TICK_FAILED) {
    render_outgoing(ch, o, false, &b);
    chat_println(ch, tern_buf_cstr(&b));
  } else if (o->tick == TICK_DELIVERED || o->tick == TICK_READ) {
    tern_buf_printf(&b, "%s: %s (msg_id %s)", o->tick == TICK_READ ? "read" : "✓✓ delivered", o->text,
                    o->msg_id ? o->msg_id : "?");
    chat_println(ch, tern_buf_cstr(&b));
  }
  tern_buf_free(&b);
}

static void set_tick(session *s, outgoing *o, int tick) {
  chat_state *ch = s->data;
  if (tick <= o->tick && tick != TICK_FAILED) return;
  /* Without a terminal every step gets its line, so a jump (read before delivered) shows
   * the skipped step too: read implies delivered. */
  if (!ch->tty && tick == TICK_READ && o->tick == TICK_SENT) {
    o->tick = TICK_DELIVERED;
    show_outgoing(ch, o, false);
  }
  o->tick = tick;
  show_outgoing(ch, o, false);
}

/* A group message's receipts changed: its tick follows the tally (✓✓ once every member it
 * reached has it, read once they all read it), and its line shows the counts. */
static void chat_group_receipt(session *s, outgoing *o, const tern_strs *by, bool read) {
  chat_state *ch = s->data;
  if (o->tick < TICK_SENT || !tern_cli_tally_add(&o->tally, by, read)) return;
  if (tern_cli_tally_all(&o->tally, true)) o->tick = TICK_READ;
  else if (tern_cli_tally_all(&o->tally, false)) o->tick = TICK_DELIVERED;
  show_outgoing(ch, o, false);
}

static void chat_send_one(session *s, outgoing *o) {
  chat_state *ch = s->data;
  size_t n = strlen(o->text);
  int rc;
  if (ch->e2e) {
    tern_e2e_inner in = {.body = o->text, .group_id = ch->in_group ? ch->group.group_id : NULL};
    tern_frame f;
    rc = tern_cli_e2e_frame(s->e, &ch->t, o->id, ch->in_group ? NULL : ch->peer,
                            ch->in_group ? ch->group.group_id : NULL, &in, NULL, &f);
    if (rc == 0) {
      rc = tern_client_send_frame(s->conn, &f, NULL);
      tern_cli_e2e_frame_free(&f);
    }
  } else {
    rc = ch->in_group ? tern_client_send_group(s->conn, o->id, ch->group.group_id, o->text, n, NULL)
                      : tern_client_send(s->conn, o->id, ch->peer, o->text, n, NULL);
  }
  if (rc == 0) o->sent_frame = true;
}

typedef struct chat_fix {
  session *s;
  char id[TERN_CLIENT_ID_SIZE];
} chat_fix;

/* The device list is right again: the message goes again with its id. */
static void chat_fixed(void *arg, int err) {
  chat_fix *fx = arg;
  session *s = fx->s;
  chat_state *ch = s->data;
  if (s->conn && !s->quitting)
    for (size_t i = 0; i < ch->nout; i++)
      if (strcmp(ch->out[i].id, fx->id) == 0) chat_send_one(s, &ch->out[i]);
  tern_free(fx);
}

static void chat_line(session *s, const char *text, size_t len) {
  chat_state *ch = s->data;
  while (len && (text[len - 1] == '\r' || text[len - 1] == '\n')) len--;
  if (ch->tty) {
    /* Replace the terminal's echo of the typed line with our own line. */
    size_t cols = cols_of_terminal();
    char *tmp = tern_strndup(text, len);
    size_t rows = tern_cli_text_width(tmp) / cols + 1;
    tern_free(tmp);
    printf("\033[%zuA\r\033[J", rows);
  }
  if (len == 0) return;
  if (ch->nout == ch->capout) {
    ch->capout = ch->capout ? ch->capout * 2 : 16;
    ch->out = tern_realloc(ch->out, ch->capout * sizeof *ch->out);
  }
  outgoing *o = &ch->out[ch->nout++];
  memset(o, 0, sizeof *o);
  o->tally.of = -1;
  tern_client_new_id(o->id);
  o->text = tern_strndup(text, len);
  o->ts = tern_now_ms();
  if (ch->tty) show_outgoing(ch, o, true);
  if (s->ready) chat_send_one(s, o);
}

static void chat_close_input(session *s) {
  chat_state *ch = s->data;
  if (ch->in) {
    uv_close((uv_handle_t *)ch->in, NULL);
    ch->in = NULL;
  }
}

static void chat_on_input(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  session *s = st->data;
  chat_state *ch = s->data;
  if (nread > 0) {
    tern_buf_append(&ch->line, buf->base, (size_t)nread);
    char *nl;
    while (ch->line.len && (nl = memchr(ch->line.data, '\n', ch->line.len))) {
      size_t n = (size_t)(nl - ch->line.data);
      chat_line(s, ch->line.data, n);
      tern_buf_consume(&ch->line, n + 1);
    }
  } else if (nread < 0) {
    if (ch->line.len) chat_line(s, ch->line.data, ch->line.len);
    tern_buf_reset(&ch->line);
    ch->in_eof = true;
    chat_close_input(s);
    chat_check_done(s);
  }
  tern_free(buf->base);
}

static void chat_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  buf->base = tern_malloc(4096);
  buf->len = 4096;
}

/* At end of input: done once every message has its tick (or, with --timeout, is read). */
static void chat_check_done(session *s) {
  chat_state *ch = s->data;
  if (!ch->in_eof || s->quitting || !s->ready) return;
  for (size_t i = 0; i < ch->nout; i++) {
    int t = ch->out[i].tick;
    if (t == TICK_FAILED) continue;
    if (t < (ch->has_timeout ? TICK_READ : TICK_SENT)) return;
  }
  session_quit(s, 0);
}

static void chat_flush_reads(uv_timer_t *t) {
  session *s = t->data;
  chat_state *ch = s->data;
  if (!ch->in_group) {
    for (size_t off = 0; off < ch->nunread; off += READ_BATCH) {
      size_t n = TERN_MIN(ch->nunread - off, (size_t)READ_BATCH);
      if (s->conn) tern_client_read(s->conn, ch->peer, (const char *const *)ch->unread + off, n);
    }
  } else {
    /* A group read names one sender: one frame per sender, in batches, in the order seen. */
    const char **ids = tern_calloc(ch->nunread ? ch->nunread : 1, sizeof *ids);
    for (size_t i = 0; i < ch->nunread; i++) {
      const char *peer = ch->unread_from[i];
      if (!peer) continue; /* this sender's frame went out already */
      size_t n = 0;
      for (size_t j = i; j < ch->nunread; j++) {
        if (!ch->unread_from[j] || strcmp(ch->unread_from[j], peer) != 0) continue;
        ids[n++] = ch->unread[j];
        if (j != i) {
          tern_free(ch->unread_from[j]);
          ch->unread_from[j] = NULL;
        }
      }
      for (size_t off = 0; off < n && s->conn; off += READ_BATCH)
        tern_client_read_group(s->conn, ch->group.group_id, peer, ids + off, TERN_MIN(n - off, (size_t)READ_BATCH));
      tern_free(ch->unread_from[i]);
      ch->unread_from[i] = NULL;
    }
    tern_free(ids);
  }
  for (size_t i = 0; i < ch->nunread; i++) tern_free(ch->unread[i]);
  ch->nunread = 0;
}

/* "bob is typing…" once when bob starts; nothing when he pauses or writes (he is forgotten). */
static void chat_typing(chat_state *ch, const char *who, bool composing) {
  size_t i = 0;
  while (i < ch->ntyping && strcmp(ch->typing[i], who) != 0) i++;
  if (composing && i == ch->ntyping) {
    ch->typing = tern_realloc(ch->typing, (ch->ntyping + 1) * sizeof *ch->typing);
    ch->typing[ch->ntyping++] = tern_strdup(who);
    char line[TERN_CLIENT_USER_MAX + 32];
    snprintf(line, sizeof line, "%s is typing…", who);
    chat_println_dim(ch, line);
  } else if (!composing && i < ch->ntyping) {
    tern_free(ch->typing[i]);
    ch->typing[i] = ch->typing[--ch->ntyping];
  }
}

/* After sent: who it missed, and a group of one (nobody to tell) counts as read at once. */
static void chat_group_sent(chat_state *ch, outgoing *o, const tern_client_event *ev) {
  const tern_strs *skipped = &ev->frame.skipped;
  if (skipped->n) {
    tern_buf b = {0};
    tern_buf_puts(&b, "missed by ");
    for (size_t i = 0; i < skipped->n; i++) {
      tern_str u = tern_strs_at(skipped, i);
      tern_buf_printf(&b, "%s%.*s", i ? ", " : "", (int)u.n, u.p ? u.p : "?");
    }
    tern_buf_printf(&b, " (their inboxes are full): %s", o->text);
    chat_println_dim(ch, tern_buf_cstr(&b));
    tern_buf_free(&b);
  }
  if (tern_cli_tally_all(&o->tally, true)) o->tick = TICK_READ;
}

/* A change of this group, as a line of its own; the chat ends when it takes us out. */
static void chat_group_event(session *s, const tern_client_event *ev) {
  chat_state *ch = s->data;
  const tern_envelope *e = &ev->frame.env;
  char when[32];
  tern_cli_format_time(ev->ts, !ch->tty, when, sizeof when);
  tern_buf b = {0};
  tern_buf_printf(&b, "[%s] #%s: ", when, ch->group.name);
  tern_cli_group_event_text(e, ch->group.name, &b);
  chat_println_dim(ch, tern_buf_cstr(&b));
  tern_buf_free(&b);
  if (e->event == TERN_GROUP_RENAMED && e->name.p)
    tern_cli_printable(e->name.p, ch->group.name, sizeof ch->group.name);
  bool out = false;
  for (size_t i = 0; i < e->users.n; i++) {
    tern_str u = tern_strs_at(&e->users, i);
    out |= u.p && strcmp(u.p, s->c->creds.user) == 0;
  }
  if (out && (e->event == TERN_GROUP_REMOVED || e->event == TERN_GROUP_LEFT)) {
    tern_buf_printf(&b, "you are no longer a member of %s", ch->group.name);
    chat_println_dim(ch, tern_buf_cstr(&b));
    tern_buf_free(&b);
    session_quit(s, 0);
  }
}

static outgoing *find_outgoing(chat_state *ch, const char *msg_id) {
  for (size_t i = ch->nout; i-- > 0;)
    if (ch->out[i].msg_id && strcmp(ch->out[i].msg_id, msg_id) == 0) return &ch->out[i];
  return NULL;
}

static void chat_event(session *s, const tern_client_event *ev) {
  chat_state *ch = s->data;
  const char *me = s->c->creds.user;
  switch (ev->type) {
    case TERN_CLIENT_EV_READY: {
      if (isatty(2) && ch->in_group)
        fprintf(stderr, "chatting in %s as %s; type a line and press Enter, Ctrl-D to end\n", ch->group.name, ev->user);
      else if (isatty(2))
        fprintf(stderr, "chatting with %s as %s; type a line and press Enter, Ctrl-D to end\n", ch->peer, ev->user);
      const char *peer = ch->peer;
      if (!ch->in_group) tern_client_watch(s->conn, &peer, 1);
      for (size_t i = 0; i < ch->nout; i++)
        if (!ch->out[i].sent_frame) chat_send_one(s, &ch->out[i]);
      chat_check_done(s);
      break;
    }
    case TERN_CLIENT_EV_SENT: {
      for (size_t i = 0; i < ch->nout; i++) {
        outgoing *o = &ch->out[i];
        if (!ev->id || strcmp(o->id, ev->id) != 0 || o->msg_id) continue;
        o->msg_id = tern_strdup(ev->msg_id ? ev->msg_id : "?");
        tern_cli_msgs_note(s->c, ev->msg_id, ch->in_group ? NULL : ch->peer, ch->in_group ? ch->group.group_id : NULL);
        if (ch->e2e && ev->msg_id) {
          tern_e2e_inner in = {.body = o->text, .group_id = ch->in_group ? ch->group.group_id : NULL};
          tern_buf inner = {0};
          tern_e2e_inner_encode(&in, &inner);
          tern_e2e_remember_sent(s->e, ev->msg_id, ch->in_group ? ch->group.group_id : ch->peer, ch->in_group,
                                 inner.data, inner.len);
          tern_buf_free(&inner);
        }
        if (ev->ts) o->ts = ev->ts;
        if (ch->in_group) o->tally.of = ev->frame.has_recipients ? (int64_t)ev->frame.recipients : -1;
        set_tick(s, o, TICK_SENT);
        if (ch->in_group) chat_group_sent(ch, o, ev);
        break;
      }
      chat_check_done(s);
      break;
    }
    case TERN_CLIENT_EV_ERROR: {
      outgoing *o = NULL;
      for (size_t i = 0; ev->id && i < ch->nout; i++)
        if (strcmp(ch->out[i].id, ev->id) == 0) o = &ch->out[i];
      if (o && ch->e2e && strcmp(ev->code, "devices_changed") == 0 && ch->fixes < 10) {
        ch->fixes++;
        chat_fix *fx = tern_calloc(1, sizeof *fx);
        fx->s = s;
        snprintf(fx->id, sizeof fx->id, "%s", o->id);
        tern_cli_e2e_fix(s->c, s->client, s->e, &ch->t, &ev->frame, chat_fixed, fx);
        break;
      }
      if (ev->user) tern_cli_complain(s->c, 1, "%s: %s (%s)", ev->user, ev->message, ev->code);
      else tern_cli_complain(s->c, 1, "%s (%s)", ev->message, ev->code);
      if (o) {
        set_tick(s, o, TICK_FAILED);
        chat_check_done(s);
      }
      if (ev->user && strcmp(ev->code, "no_such_user") == 0 && strcmp(ev->user, ch->peer) == 0) session_quit(s, 1);
      if (ch->in_group && strcmp(ev->code, "no_such_group") == 0) session_quit(s, 1);
      break;
    }
    case TERN_CLIENT_EV_MSG: {
      bool repeat = ev->seq && ev->seq <= ch->last_seq;
      if (ev->seq > ch->last_seq) ch->last_seq = ev->seq;
      if (!repeat) {
        const char *from = ev->from ? ev->from : "?";
        bool mine = strcmp(from, me) == 0;
        bool ours = ch->in_group && ev->group_id && strcmp(ev->group_id, ch->group.group_id) == 0;
        tern_buf b = {0};
        char when[32];
        tern_cli_format_time(ev->ts, !ch->tty, when, sizeof when);
        if (ours && mine) tern_buf_printf(&b, "[%s] you (another device): ", when);
        else if (ours) tern_buf_printf(&b, "[%s] %s: ", when, from);
        else if (ev->group_id)
          tern_buf_printf(&b, "[%s] %s → #%s: ", when, mine ? "you (another device)" : from, ev->group_id);
        else if (mine) tern_buf_printf(&b, "[%s] you (another device) → %s: ", when, ev->to ? ev->to : "?");
        else if (!ch->in_group && strcmp(from, ch->peer) == 0) tern_buf_printf(&b, "[%s] %s: ", when, from);
        else tern_buf_printf(&b, "[%s] %s → you: ", when, from);
        if (ours && !mine) chat_typing(ch, from, false); /* they wrote: no longer typing */
        msg_extras_text(&ev->frame.env, &b); /* replies, reactions, edits, deletes; 🔒: it came encrypted */
        note_msg(s, ev);
        if (ev->media_id) {
          char img[160];
          tern_client_format_media(ev, img, sizeof img);
          tern_buf_printf(&b, "%s%s", img, ev->body ? " " : "");
        }
        if (ev->body) tern_buf_append(&b, ev->body, ev->body_len);
        if (!ch->tty) tern_buf_printf(&b, " (msg_id %s)", ev->msg_id ? ev->msg_id : "?");
        chat_println(ch, tern_buf_cstr(&b));
        tern_buf_free(&b);
        /* Displayed means read, for the peer's messages to us (or the members', to the group). */
        if (((!ch->in_group && strcmp(from, ch->peer) == 0) || (ours && !mine)) && ev->msg_id) {
          if (ch->nunread == ch->capunread) {
            ch->capunread = ch->capunread ? ch->capunread * 2 : 16;
            ch->unread = tern_realloc(ch->unread, ch->capunread * sizeof *ch->unread);
            ch->unread_from = tern_realloc(ch->unread_from, ch->capunread * sizeof *ch->unread_from);
          }
          ch->unread_from[ch->nunread] = ch->in_group ? tern_strdup(from) : NULL;
          ch->unread[ch->nunread++] = tern_strdup(ev->msg_id);
          if (!uv_is_active((uv_handle_t *)&ch->reads)) uv_timer_start(&ch->reads, chat_flush_reads, 0, 0);
        }
      }
      if (ev->seq) tern_client_ack(s->conn, ev->seq);
      break;
    }
    case TERN_CLIENT_EV_RECEIPT: {
      if (ev->seq > ch->last_seq) ch->last_seq = ev->seq;
      if (ev->from && strcmp(ev->from, me) == 0 && ev->by && strcmp(ev->by, me) != 0) {
        for (size_t i = 0; i < ev->n_msg_ids; i++) {
          outgoing *o = find_outgoing(ch, ev->msg_ids[i]);
          if (o) set_tick(s, o, ev->read ? TICK_READ : TICK_DELIVERED);
        }
      } else if (ch->in_group && ev->group_id && strcmp(ev->group_id, ch->group.group_id) == 0 && ev->from &&
                 strcmp(ev->from, me) == 0) {
        for (size_t i = 0; i < ev->n_msg_ids; i++) {
          outgoing *o = find_outgoing(ch, ev->msg_ids[i]);
          if (o) chat_group_receipt(s, o, &ev->frame.env.by_list, ev->read);
        }
      }
      if (ev->seq) tern_client_ack(s->conn, ev->seq);
      chat_check_done(s);
      break;
    }
    case TERN_CLIENT_EV_PRESENCE: {
      if (!ev->user || strcmp(ev->user, ch->peer) != 0) break;
      tern_buf b = {0};
      if (ev->online) {
        tern_buf_printf(&b, "%s is online", ev->user);
      } else if (ev->last_seen < 0) {
        tern_buf_printf(&b, "%s is offline (never seen)", ev->user);
      } else {
        char ago[48];
        tern_cli_humanize_ago(tern_now_ms(), ev->last_seen, ago, sizeof ago);
        tern_buf_printf(&b, "%s is offline (last seen %s)", ev->user, ago);
      }
      chat_println_dim(ch, tern_buf_cstr(&b));
      tern_buf_free(&b);
      break;
    }
    case TERN_CLIENT_EV_PROFILE: {
      tern_buf b = {0};
      profile_text(ev, &b);
      chat_println_dim(ch, tern_buf_cstr(&b));
      tern_buf_free(&b);
      break;
    }
    case TERN_CLIENT_EV_TYPING:
      if (ch->in_group && ev->group_id && strcmp(ev->group_id, ch->group.group_id) == 0 && ev->from &&
          strcmp(ev->from, me) != 0)
        chat_typing(ch, ev->from, ev->composing);
      break;
    case TERN_CLIENT_EV_GROUP: {
      /* Only this group's changes belong here; the others wait for listen. */
      if (!ch->in_group || !ev->group_id || strcmp(ev->group_id, ch->group.group_id) != 0) break;
      bool repeat = ev->seq && ev->seq <= ch->last_seq;
      if (ev->seq > ch->last_seq) ch->last_seq = ev->seq;
      if (!repeat) chat_group_event(s, ev);
      if (ev->seq) tern_client_ack(s->conn, ev->seq);
      break;
    }
    default:
      break;
  }
}

static void chat_closed(session *s) {
  chat_state *ch = s->data;
  chat_close_input(s);
  uv_close((uv_handle_t *)&ch->reads, NULL);
}

static void chat_timeout(session *s) { session_quit(s, 0); }

int tern_cli_cmd_chat(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, TERN_CLI_OPT_TIMEOUT | TERN_CLI_OPT_GROUP | TERN_CLI_OPT_E2E |
                                                   TERN_CLI_OPT_PLAIN, 0, 1);
  if (rc) return rc < 0 ? 0 : rc;
  if (c.group && c.npos) return tern_cli_complain(&c, 2, "chat with USER or with --group GROUP, not both");
  if (!c.group && !c.npos) return tern_cli_complain(&c, 2, "missing arguments (see tern %s --help)", c.cmd);
  chat_state ch;
  memset(&ch, 0, sizeof ch);
  if (!c.group) {
    size_t plen = strlen(c.pos[0]);
    if (plen > TERN_CLIENT_USER_MAX) return tern_cli_complain(&c, 2, "'%s' is not a username", c.pos[0]);
    for (size_t i = 0; i <= plen; i++) ch.peer[i] = (char)tolower((unsigned char)c.pos[0][i]);
  }
  if ((rc = tern_cli_need_login(&c))) return rc;
  if (c.group) {
    if ((rc = tern_cli_group_resolve(&c, c.group, &ch.group))) return rc;
    ch.in_group = true;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  ch.has_timeout = c.timeout_ms > 0;
  session s = {.c = &c, .on_event = chat_event, .on_timeout = chat_timeout, .on_closed = chat_closed, .data = &ch};
  if (c.e2e && c.plain) return tern_cli_complain(&c, 2, "--e2e and --plain contradict each other");
  s.e = tern_cli_e2e_load(&c, !c.e2e);
  if (s.e && !c.plain) {
    char keyless[TERN_CLIENT_USER_MAX + 1] = "";
    int all = tern_cli_e2e_conversation(&c, s.e, ch.peer, ch.in_group ? ch.group.group_id : NULL, &ch.t, keyless,
                                        sizeof keyless);
    ch.e2e = all == 1 && ch.t.n > 0; /* nobody to encrypt for: a group of one */
    if (all < 0 && all != -ENOENT) {
      tern_e2e_close(s.e);
      return tern_cli_complain(&c, 1, "cannot fetch the keys of this chat: %s", tern_cli_errstr(all));
    }
    if (all != 1 && c.e2e) {
      tern_e2e_close(s.e);
      return tern_cli_complain(&c, 1, "--e2e: %s has no end-to-end keys", all == 0 ? keyless : "someone");
    }
    if (all == 0) fprintf(stderr, "tern: chat: %s has no end-to-end keys: messages go in plaintext\n", keyless);
  } else if (c.e2e) {
    tern_e2e_close(s.e);
    return tern_cli_complain(&c, 1, "--e2e: this device cannot encrypt on %s", c.server);
  }
  if (ch.e2e && isatty(2)) fprintf(stderr, "🔒 messages in this chat are end-to-end encrypted\n");

  /* stdin and the read-receipt timer join the session's loop. */
  session_setup(&s);
  uv_timer_init(&s.loop, &ch.reads);
  ch.reads.data = &s;
  uv_handle_type t = uv_guess_handle(0);
  ch.tty = t == UV_TTY && isatty(1);
  if (t == UV_TTY && uv_tty_init(&s.loop, &ch.tty_in, 0, 1) == 0) {
    ch.in = (uv_stream_t *)&ch.tty_in;
  } else if ((t == UV_NAMED_PIPE || t == UV_TCP) && uv_pipe_init(&s.loop, &ch.pipe_in, 0) == 0) {
    if (uv_pipe_open(&ch.pipe_in, 0) == 0) ch.in = (uv_stream_t *)&ch.pipe_in;
    else uv_close((uv_handle_t *)&ch.pipe_in, NULL);
  }
  if (ch.in) {
    ch.in->data = &s;
    uv_read_start(ch.in, chat_alloc, chat_on_input);
  } else {
    /* A file (or /dev/null): read it all now; it cannot block for long. */
    char chunk[4096];
    ssize_t r;
    while ((r = read(0, chunk, sizeof chunk)) > 0 || (r < 0 && errno == EINTR)) {
      if (r < 0) continue;
      tern_buf_append(&ch.line, chunk, (size_t)r);
      char *nl;
      while (ch.line.len && (nl = memchr(ch.line.data, '\n', ch.line.len))) {
        size_t n = (size_t)(nl - ch.line.data);
        chat_line(&s, ch.line.data, n);
        tern_buf_consume(&ch.line, n + 1);
      }
    }
    if (ch.line.len) chat_line(&s, ch.line.data, ch.line.len);
    ch.in_eof = true;
  }
  rc = session_go(&s, c.timeout_ms);

  for (size_t i = 0; i < ch.nout; i++) {
    tern_free(ch.out[i].text);
    tern_free(ch.out[i].msg_id);
    tern_cli_tally_free(&ch.out[i].tally);
  }
  tern_free(ch.out);
  for (size_t i = 0; i < ch.nunread; i++) {
    tern_free(ch.unread[i]);
    tern_free(ch.unread_from[i]);
  }
  tern_free(ch.unread);
  tern_free(ch.unread_from);
  for (size_t i = 0; i < ch.ntyping; i++) tern_free(ch.typing[i]);
  tern_free(ch.typing);
  tern_buf_free(&ch.line);
  tern_cli_targets_free(&ch.t);
  return rc;
}
