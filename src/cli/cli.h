/* cli.h: the `tern` command-line client's commands and the helpers they share, built on
 * libtern-client. src/cmd/tern.c only dispatches to these.
 *
 * Every command takes its own argv (argv[0] is the command name), prints human text (not
 * logfmt), and returns the process exit status: 0 success, 1 a server or network error,
 * 2 a usage error. Errors are one line on stderr, "tern: CMD: what went wrong".
 */
#ifndef TERN_CLI_CLI_H
#define TERN_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/client.h"

/* ---- commands ---- */
int tern_cli_cmd_register(int argc, char **argv);
int tern_cli_cmd_login(int argc, char **argv);
int tern_cli_cmd_logout(int argc, char **argv);
int tern_cli_cmd_me(int argc, char **argv);
int tern_cli_cmd_whois(int argc, char **argv);
int tern_cli_cmd_send(int argc, char **argv);
int tern_cli_cmd_fetch(int argc, char **argv);
int tern_cli_cmd_listen(int argc, char **argv);
int tern_cli_cmd_chat(int argc, char **argv);
/* PROTOCOL.md 15: reactions, edits, deletes, profiles. */
int tern_cli_cmd_react(int argc, char **argv);
int tern_cli_cmd_edit(int argc, char **argv);
int tern_cli_cmd_delete(int argc, char **argv);
int tern_cli_cmd_profile(int argc, char **argv);
/* argv[1] is the subcommand: create, add, remove, leave, admin, rename, info, list. */
int tern_cli_cmd_group(int argc, char **argv);
/* tern safety USER: the 60-digit safety number with USER (PROTOCOL.md 11). */
int tern_cli_cmd_safety(int argc, char **argv);
/* settings.c: blocking, privacy, password, devices, account deletion (PROTOCOL.md 14) */
int tern_cli_cmd_block(int argc, char **argv);
int tern_cli_cmd_unblock(int argc, char **argv);
int tern_cli_cmd_blocks(int argc, char **argv);
int tern_cli_cmd_privacy(int argc, char **argv);
int tern_cli_cmd_password(int argc, char **argv);
int tern_cli_cmd_device(int argc, char **argv);
int tern_cli_cmd_delete_account(int argc, char **argv);
/* tern-e2e-peer: the interop peer's main (docs/e2e.md). */
int tern_cli_e2e_peer_main(int argc, char **argv);

/* The usage text of a command (NULL for an unknown one; "group" lists the group commands,
 * "group create" is one of them), and of the whole program. */
const char *tern_cli_cmd_usage(const char *cmd);
const char *tern_cli_usage(void);

/* ---- credentials: one JSON file per server in $XDG_CONFIG_HOME/tern (else ~/.config/tern),
 * the directory 0700, the file 0600 ---- */

typedef struct tern_cli_creds {
  char server[TERN_CLIENT_HOST_MAX + 24];          /* the server, "http(s)://host:port" */
  char user[TERN_CLIENT_USER_MAX + 1];             /* logged-in user */
  char device_id[TERN_CLIENT_DEVICE_ID_MAX + 1];   /* this device */
  char token[TERN_CLIENT_TOKEN_MAX + 1];           /* its bearer token */
} tern_cli_creds;

/* The directory: 0, -ENOENT when neither XDG_CONFIG_HOME nor HOME is set, -ENAMETOOLONG. */
int tern_cli_creds_dir(char *out, size_t cap);
/* The file for a server: DIR/HOST-PORT.json (characters unsafe in file names become '_'). */
int tern_cli_creds_path(const tern_client_url *url, char *out, size_t cap);
/* Writes atomically (temporary file, fsync, rename) with mode 0600, creating the directory
 * (0700) and missing parents as needed. Returns 0 or a negative errno. */
int tern_cli_creds_save(const char *path, const tern_cli_creds *cr);
/* 0, -ENOENT when there is no file, -EBADMSG when it is not a credentials file. */
int tern_cli_creds_load(const char *path, tern_cli_creds *cr);
/* 0, or a negative errno (-ENOENT when there was nothing to remove). */
int tern_cli_creds_remove(const char *path);

/* ---- small helpers ---- */

/* "500ms", "90s", "5m", "2h", "1d"; a bare number is seconds. Returns 0 or -EINVAL. */
int tern_cli_parse_duration(const char *s, int64_t *ms);
/* "just now", "1 minute ago", "3 hours ago", "2 days ago" for then_ms seen at now_ms. */
void tern_cli_humanize_ago(int64_t now_ms, int64_t then_ms, char *out, size_t cap);
/* Local time "2026-11-23 21:14:55" (with_date) or "21:14:55". */
void tern_cli_format_time(int64_t ms, bool with_date, char *out, size_t cap);
/* Display columns of UTF-8 text (one per code point; escape sequences not understood). */
size_t tern_cli_text_width(const char *s);

#endif
