/* tern: the command-line client. Only dispatch lives here; the commands are in
 * src/cli/, on libtern-client. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
} commands[] = {
    {"register", tern_cli_cmd_register}, {"login", tern_cli_cmd_login}, {"logout", tern_cli_cmd_logout},
    {"me", tern_cli_cmd_me},             {"whois", tern_cli_cmd_whois}, {"send", tern_cli_cmd_send},
    {"listen", tern_cli_cmd_listen},     {"chat", tern_cli_cmd_chat},   {"fetch", tern_cli_cmd_fetch},
    {"group", tern_cli_cmd_group},       {"safety", tern_cli_cmd_safety},
    {"block", tern_cli_cmd_block},       {"unblock", tern_cli_cmd_unblock}, {"blocks", tern_cli_cmd_blocks},
    {"privacy", tern_cli_cmd_privacy},   {"password", tern_cli_cmd_password},
    {"device", tern_cli_cmd_device},     {"delete-account", tern_cli_cmd_delete_account},
    {"react", tern_cli_cmd_react},       {"edit", tern_cli_cmd_edit},   {"delete", tern_cli_cmd_delete},
    {"profile", tern_cli_cmd_profile},
};

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(tern_cli_usage(), stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    /* "tern help group add" names a subcommand in two words. */
    char two[64];
    snprintf(two, sizeof two, "%s %s", argc > 2 ? argv[2] : "", argc > 3 ? argv[3] : "");
    const char *usage = argc > 3 ? tern_cli_cmd_usage(two) : NULL;
    if (!usage && argc > 2) usage = tern_cli_cmd_usage(argv[2]);
    fputs(usage ? usage : tern_cli_usage(), stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(commands[i].name, cmd) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "tern: unknown command '%s' (see tern --help)\n", cmd);
  return 2;
}
