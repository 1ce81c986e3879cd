/* cli_int.h: what the files of the `tern` CLI share (cli.c: arguments, messages, synchronous
 * HTTP and the 1:1 and group sessions; group.c: the group commands and the group helpers
 * that send, listen and chat use). Not an API: src/cmd/tern.c sees cli.h only.
 *
 * Ownership: a tern_cli lives on its command's stack and points into argv (which
 * tern_cli_parse_args reorders: positional arguments first) and into the environment; it
 * owns nothing on the heap. The group helpers say what they allocate.
 */
#ifndef TERN_CLI_CLI_INT_H
#define TERN_CLI_CLI_INT_H

#include "cli/cli.h"
#include "client/e2ee.h"
#include "proto/frame.h"

/* ---- arguments ---- */

/* The options a command accepts (a mask for tern_cli_parse_args); --server and --help go
 * everywhere. */
enum {
  TERN_CLI_OPT_PASSWORD = 1 << 0,
  TERN_CLI_OPT_DEVICE = 1 << 1,
  TERN_CLI_OPT_COUNT = 1 << 2,
  TERN_CLI_OPT_TIMEOUT = 1 << 3,
  TERN_CLI_OPT_IMAGE = 1 << 4,
  TERN_CLI_OPT_OUTPUT = 1 << 5,
  TERN_CLI_OPT_THUMB = 1 << 6,       /* a flag: takes no value */
  TERN_CLI_OPT_DESCRIPTION = 1 << 7, /* --description D */
  TERN_CLI_OPT_OFF = 1 << 8,         /* --off, a flag */
  TERN_CLI_OPT_GROUP = 1 << 9,       /* --group GROUP */
  TERN_CLI_OPT_E2E = 1 << 10,        /* --e2e, a flag: encrypted or nothing */
  TERN_CLI_OPT_PLAIN = 1 << 11,      /* --plain, a flag: never encrypt */
  TERN_CLI_OPT_CA_FILE = 1 << 12,    /* --ca-file FILE: every command takes it */
  TERN_CLI_OPT_YES = 1 << 13,        /* --yes, a flag: confirms what cannot be undone */
  TERN_CLI_OPT_REPLY = 1 << 14,      /* --reply MSG_ID: the message quoted */
  TERN_CLI_OPT_TO = 1 << 15,         /* --to USER: the conversation of an action's message */
  TERN_CLI_OPT_NAME = 1 << 16,       /* --name N: a display name */
  TERN_CLI_OPT_AVATAR = 1 << 17,     /* --avatar FILE: an avatar image */
  TERN_CLI_OPT_NO_AVATAR = 1 << 18,  /* --no-avatar, a flag */
};

#define TERN_CLI_ANY_POS (-1) /* max_pos: no limit on positional arguments */

typedef struct tern_cli {
  const char *cmd;                 /* the command, for messages ("send", "group add") */
  tern_client_url url;             /* the server */
  char server[TERN_CLIENT_HOST_MAX + 24]; /* "http(s)://host:port" */
  const char *password;            /* --password */
  const char *device;              /* --device */
  long count;                      /* --count, 0 when absent */
  int64_t timeout_ms;              /* --timeout, 0 when absent */
  const char *image;               /* --image */
  const char *output;              /* -o / --output */
  bool thumb;                      /* --thumb */
  const char *description;         /* --description, NULL when absent ("" is a value) */
  bool off;                        /* --off */
  const char *group;               /* --group */
  bool e2e;                        /* --e2e */
  bool plain;                      /* --plain */
  bool yes;                        /* --yes */
  const char *reply;               /* --reply */
  const char *to;                  /* --to */
  const char *name;                /* --name ("" is a value: clears it) */
  const char *avatar;              /* --avatar */
  bool no_avatar;                  /* --no-avatar */
  char **pos;                      /* positional arguments (argv reordered), npos of them */
  int npos;
  char creds_path[4096];           /* this server's credentials file */
  tern_cli_creds creds;            /* loaded by tern_cli_need_login */
} tern_cli;

/* Parses argv (argv[0] is the command's name, as messages show it) into c, allowing the
 * options in `allowed` and min_pos to max_pos positional arguments (TERN_CLI_ANY_POS: any
 * number). Returns 0 to go on, -1 after printing --help (exit 0), or the exit status after a
 * usage error (2). */
int tern_cli_parse_args(tern_cli *c, int argc, char **argv, unsigned allowed, int min_pos, int max_pos);
/* "tern: CMD: ..." on stderr; returns status. */
int tern_cli_complain(const tern_cli *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Loads this server's credentials into c->creds: 0, or the exit status after saying why. */
int tern_cli_need_login(tern_cli *c);
/* A libuv or errno code as a sentence. */
const char *tern_cli_errstr(int err);

/* ---- synchronous HTTP: one request on a private loop ---- */

typedef struct tern_cli_sync {
  uv_loop_t loop;           /* private loop */
  tern_client *c;           /* context on it */
  tern_client_response r;   /* the answer (the caller frees it) */
  bool done;                /* r is filled */
} tern_cli_sync;

/* timeout_ms 0: the library's default (30 s). */
void tern_cli_sync_begin_timeout(tern_cli_sync *s, int64_t timeout_ms);
void tern_cli_sync_begin(tern_cli_sync *s);
/* The callback to give the request: it moves the answer into s->r. */
void tern_cli_sync_cb(tern_client_response *r, void *arg);
/* Runs the loop (unless rc, what starting the request returned, is an error) and closes it;
 * s->r is always filled afterwards. */
void tern_cli_sync_end(tern_cli_sync *s, int rc);
/* Says why a request failed, as the account commands word it; returns 1. */
int tern_cli_http_failed(const tern_cli *c, const tern_client_response *r);
/* Fills out with a password: --password, else $TERN_PASSWORD, else a prompt on a terminal (twice
 * with confirm), else a line of stdin. Returns 0 or an exit status. */
int tern_cli_get_password(tern_cli *c, const char *user, bool confirm, char *out, size_t cap);
/* 0 when s->r is a success, else the exit status after saying why (s->r is then freed). */
int tern_cli_sync_failed(const tern_cli *c, tern_cli_sync *s);

/* ---- the conversations of messages seen (msgs.c) ---- */

/* Notes that msg_id belongs to the 1:1 conversation with user, or to group_id (best effort). */
void tern_cli_msgs_note(const tern_cli *c, const char *msg_id, const char *user, const char *group_id);
/* The conversation of a noted msg_id: 0 with user (group "") or group (user "") filled, or
 * -ENOENT. */
int tern_cli_msgs_find(const tern_cli *c, const char *msg_id, char *user, size_t ucap, char *group, size_t gcap);

/* ---- groups (group.c) ---- */

/* A group named on the command line, as resolved by tern_cli_group_resolve. */
typedef struct tern_cli_group_ref {
  char group_id[TERN_CLIENT_GROUP_ID_MAX + 1];
  char name[128];   /* its name, for messages (the id when the list did not name it) */
  int64_t members;  /* how many members the list says it has; -1 when unknown */
  bool admin;       /* the caller is an admin (false when unknown) */
  bool listed;      /* found in the caller's list (else an id passed on unchecked) */
} tern_cli_group_ref;

/* Every group of the logged-in user (c->creds), all pages. 0 and *out filled (free it with
 * tern_client_group_list_free), or the exit status after saying why (nothing said when
 * quiet). */
int tern_cli_groups_fetch(const tern_cli *c, tern_client_group_list *out, bool quiet);
/* Which of l's groups arg names: its id, else its name when exactly one group has it (exact
 * first, then ignoring ASCII case). Returns the index, -1 when none, -2 when several do
 * (*nmatch then says how many). */
long tern_cli_group_match(const tern_client_group_list *l, const char *arg, size_t *nmatch);
/* Resolves GROUP (an id or a unique name among the user's groups). 0 and *out filled, or the
 * exit status after saying why: 1 when the name is unknown or ambiguous. A syntactically
 * valid id that is not in the list is passed on as it is, so that the server says what it
 * thinks of it. */
int tern_cli_group_resolve(const tern_cli *c, const char *arg, tern_cli_group_ref *out);
/* Says why a group request failed: "tern: CMD: code: message", with the user the error names;
 * returns 1. */
int tern_cli_group_refused(const tern_cli *c, const tern_client_response *r);

/* Copies UTF-8 text for a terminal: C0 controls, DEL and invalid UTF-8 become '?', so that a
 * name chosen by someone else cannot move the cursor or recolour the screen. */
void tern_cli_printable(const char *s, char *out, size_t cap);

/* What a group event says, one line without its time: "alice added dave, erin". users are
 * shown as they are; group is the name to show for the group. */
void tern_cli_group_event_text(const tern_envelope *e, const char *group, tern_buf *out);

/* The receipts of one message sent to a group, per member (PROTOCOL.md 10: a member who read
 * has delivered too). Owns its names: tern_cli_tally_free. */
typedef struct tern_cli_tally {
  int64_t of;          /* the members it went to (sent's recipients, or a guess); -1 unknown */
  char **delivered;    /* members who delivered or read it, each once */
  size_t ndelivered;
  char **read;         /* members who read it */
  size_t nread;
} tern_cli_tally;

/* Adds the users of a receipt; returns true when it changed the tally. */
bool tern_cli_tally_add(tern_cli_tally *t, const tern_strs *by, bool read);
void tern_cli_tally_free(tern_cli_tally *t);
/* How tern_cli_tally_text words a tally ("of M" only when of is known). */
typedef enum tern_cli_tally_view {
  TERN_CLI_TALLY_DELIVERED, /* "✓✓ delivered to 3 of 3" (✓✓ once everyone has), "delivered to 2 of 3" */
  TERN_CLI_TALLY_READ,      /* "read by 2 of 3" */
  TERN_CLI_TALLY_TICKS,     /* chat's tick: "✓ delivered to 2 of 3, read by 1", "✓✓ delivered to
                               3 of 3, read by 2", "✓" before any receipt */
} tern_cli_tally_view;
void tern_cli_tally_text(const tern_cli_tally *t, tern_cli_tally_view view, tern_buf *out);
/* Every recipient delivered (read: read) it; true when it went to nobody, false when of is
 * unknown. */
bool tern_cli_tally_all(const tern_cli_tally *t, bool read);

/* ---- end-to-end encryption (secure.c) ---- */

/* The state directory of this server's device: the credentials file's name with .e2e for
 * .json. 0 or -ENAMETOOLONG. */
int tern_cli_e2e_dir(const tern_cli *c, char *out, size_t cap);
/* Removes the state (logout: the server deleted the keys). */
void tern_cli_e2e_remove(const tern_cli *c);
/* After register/login (c->creds filled): a fresh identity for the new device, published
 * with PUT /v1/keys. Says on stderr what went wrong; never fails the command. */
void tern_cli_e2e_publish(const tern_cli *c);
/* GET /v1/keys and a PUT of fresh one-time prekeys when few are left (the full PUT when the
 * server has none for this device). 0, -ENOENT when the server has no key directory,
 * -EEXIST when it holds another identity for this device, or a network/protocol code. */
int tern_cli_e2e_topup(const tern_cli *c, tern_e2e *e);
/* This device's state, made and published if needed, and topped up; NULL when the server
 * has no key directory or the state cannot be used (said on stderr unless quiet). Close it
 * with tern_e2e_close. */
tern_e2e *tern_cli_e2e_load(const tern_cli *c, bool quiet);
/* A warning line on stderr for a new device or a changed key (nothing for the others). */
void tern_cli_e2e_warn(const char *user, const char *device_id, tern_e2e_change ch);

/* The devices an encrypted send goes to. */
typedef struct tern_cli_target {
  char user[TERN_CLIENT_USER_MAX + 1];
  char device_id[TERN_CLIENT_DEVICE_ID_MAX + 1];
} tern_cli_target;
typedef struct tern_cli_targets {
  tern_cli_target *v; /* tern_malloc'd */
  size_t n;
  size_t nrecipient;  /* entries that are not our own devices */
} tern_cli_targets;
void tern_cli_targets_free(tern_cli_targets *t);
/* The devices of users and our other devices, in *t: those we have sessions with, and for
 * a user we know no device of, GET /v1/keys/{user} (synchronously, before a session) and
 * sessions with what it lists. The rest is learnt from devices_changed (tern_cli_e2e_fix). 0, -ENOENT when a user is unknown (404: the send itself should get the
 * server's no_such_user), or another negative code; t is empty on failure. */
int tern_cli_e2e_prepare(const tern_cli *c, tern_e2e *e, const char *const *users, size_t n, tern_cli_targets *t);
/* The encrypted send: in encrypted once per target into *f (to or group_id set, media_ref
 * may be NULL; f points into id, to, group_id, media_ref and t, which must outlive it; free
 * it with tern_cli_e2e_frame_free). 0 or a negative code. */
int tern_cli_e2e_frame(tern_e2e *e, const tern_cli_targets *t, const char *id, const char *to, const char *group_id,
                       const tern_e2e_inner *in, const char *media_ref, tern_frame *f);
void tern_cli_e2e_frame_free(tern_frame *f);
/* devices_changed (the error frame f): drops the extra devices from t, fetches bundles for
 * the missing ones on client's loop, then calls cb(arg, err) once (err 0, or what failed);
 * the caller then builds the frame again and sends it with the same id. */
typedef void (*tern_cli_e2e_fixed_cb)(void *arg, int err);
int tern_cli_e2e_fix(const tern_cli *c, tern_client *client, tern_e2e *e, tern_cli_targets *t, const tern_event *f,
                     tern_cli_e2e_fixed_cb cb, void *arg);
/* Decrypts an e2e envelope into *in (free it with tern_e2e_inner_free): 0, or a negative
 * code with err saying why; attachment keys are remembered for tern fetch. */
int tern_cli_e2e_decrypt(tern_e2e *e, const tern_envelope *env, tern_e2e_inner *in, char *err, size_t cap);
/* Tells the sender of env that we could not decrypt it (PROTOCOL.md 11). */
int tern_cli_e2e_send_decrypt_error(tern_client_conn *conn, const tern_envelope *env);
/* The targets of a conversation with peer or in group_id (the group's members fetched):
 * 1 when every other participant has a device with keys (t filled), 0 when one has none
 * (named in keyless; t empty), or a negative code. */
int tern_cli_e2e_conversation(const tern_cli *c, tern_e2e *e, const char *peer, const char *group_id,
                              tern_cli_targets *t, char *keyless, size_t cap);
/* Answers a decrypt_error envelope for one of our messages: a new session with that device
 * from a fresh bundle, and the message again to the same conversation under a new id with
 * resend_of inside. 0, -ENOENT when the message is not one we kept, or a negative code. */
int tern_cli_e2e_resend(const tern_cli *c, tern_client_conn *conn, tern_e2e *e, const tern_envelope *env);
/* Encrypts bytes with AES-256-GCM under a fresh key and uploads them as octet-stream: 0 and
 * *out filled (media_id, key, iv, sha256, mime, size; width and height -1), or the exit
 * status after saying why. */
int tern_cli_e2e_upload(const tern_cli *c, const void *bytes, size_t len, const char *mime, tern_e2e_media *out);
/* Checks the SHA-256 and decrypts a downloaded blob: 0, or -EBADMSG with err. */
int tern_cli_e2e_open_blob(const tern_e2e_media *m, const void *ct, size_t n, tern_buf *out, char *err, size_t cap);
/* GET /v1/media/{id}, checked and decrypted into out: 0 or the exit status after saying why. */
int tern_cli_e2e_download(const tern_cli *c, const tern_e2e_media *m, tern_buf *out);

#endif
