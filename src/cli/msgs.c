/* msgs: which conversation each message this device saw belongs to, so that `tern react`,
 * `edit` and `delete` need only the msg_id (a msg_id's tag names its conversation only to the
 * server, core/msgid.h). One file per server beside the credentials, "<creds>.msgs", one line
 * per message: "<msg_id> u <user>" or "<msg_id> g <group_id>", appended by send, listen and
 * chat. It stays small: past MSGS_MAX bytes the newer half is kept (a message that old is
 * usually past the edit and delete windows, and --to or --group still name it). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "cli/cli_int.h"

#define MSGS_MAX (256 * 1024) /* bytes of the file before it is cut to its newer half */

static int msgs_path(const tern_cli *c, char *out, size_t cap) {
  size_t n = strlen(c->creds_path);
  if (n < 5 || n + 1 > cap) return -ENAMETOOLONG;
  memcpy(out, c->creds_path, n - 5); /* without ".json" */
  int w = snprintf(out + n - 5, cap - (n - 5), ".msgs");
  return w < 0 || (size_t)w >= cap - (n - 5) ? -ENAMETOOLONG : 0;
}

/* The whole file (at most about MSGS_MAX plus one line), or empty. */
static void read_all(const char *path, tern_buf *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char chunk[8192];
  ssize_t r;
  while ((r = read(fd, chunk, sizeof chunk)) != 0) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || out->len > 4 * MSGS_MAX) break;
    tern_buf_append(out, chunk, (size_t)r);
  }
  close(fd);
}

/* Keeps the newer half of a file past MSGS_MAX (rewritten through a temporary file). */
static void trim(const char *path) {
  struct stat sb;
  if (stat(path, &sb) < 0 || sb.st_size <= MSGS_MAX) return;
  tern_buf b = {0};
  read_all(path, &b);
  const char *from = b.data ? memchr(b.data + b.len / 2, '\n', b.len - b.len / 2) : NULL;
  char tmp[4300];
  int w = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  int fd = from && w > 0 && (size_t)w < sizeof tmp ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
  if (fd >= 0) {
    size_t n = b.len - (size_t)(from + 1 - b.data);
    bool ok = write(fd, from + 1, n) == (ssize_t)n;
    if (close(fd) < 0 || !ok || rename(tmp, path) < 0) unlink(tmp);
  }
  tern_buf_free(&b);
}

void tern_cli_msgs_note(const tern_cli *c, const char *msg_id, const char *user, const char *group_id) {
  char path[4200];
  const char *name = group_id ? group_id : user;
  if (!msg_id || !*msg_id || !name || !*name || strpbrk(msg_id, " \n") || strpbrk(name, " \n") ||
      msgs_path(c, path, sizeof path) < 0)
    return;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return; /* best effort: the commands still take --to and --group */
  tern_buf b = {0};
  tern_buf_printf(&b, "%s %c %s\n", msg_id, group_id ? 'g' : 'u', name);
  /* one write of one short line with O_APPEND: two commands at once do not mix their lines */
  (void)!write(fd, b.data, b.len);
  close(fd);
  tern_buf_free(&b);
  trim(path);
}

int tern_cli_msgs_find(const tern_cli *c, const char *msg_id, char *user, size_t ucap, char *group, size_t gcap) {
  char path[4200];
  if (msgs_path(c, path, sizeof path) < 0) return -ENOENT;
  tern_buf b = {0};
  read_all(path, &b);
  int rc = -ENOENT;
  size_t il = strlen(msg_id);
  /* the newest line wins: search from the end */
  for (size_t end = b.len; end > 0 && rc;) {
    size_t start = end - 1;
    while (start > 0 && b.data[start - 1] != '\n') start--;
    const char *line = b.data + start;
    size_t n = end - start;
    if (n && line[n - 1] == '\n') n--;
    if (n > il + 3 && !memcmp(line, msg_id, il) && line[il] == ' ' && line[il + 2] == ' ') {
      const char *name = line + il + 3;
      size_t nl = n - il - 3;
      bool g = line[il + 1] == 'g';
      char *dst = g ? group : user;
      size_t cap = g ? gcap : ucap;
      if (nl < cap) {
        memcpy(dst, name, nl);
        dst[nl] = '\0';
        (g ? user : group)[0] = '\0';
        rc = 0;
      }
    }
    end = start;
  }
  tern_buf_free(&b);
  return rc;
}
