/*
 * file.c - secret files: created with mode 0600 in one step, never through a symlink.
 *
 * Lua: core.write_secret_file(path, text [, {force = bool}]) -> true | nil, msg, code
 * Lua's io.open creates a file with the process umask (often 0644) and follows a
 * symlink planted at the path; a key written that way is readable by others for a
 * moment, or lands where the link points. Here the file is opened with
 * O_CREAT | O_EXCL | O_NOFOLLOW and mode 0600 (POSIX.1-2017 open()), so it is new,
 * private from its first byte, and a symlink at the path is refused.
 * With force, the text goes to a new temporary file in the same directory (created the
 * same way) that is then renamed over the path (rename() replaces a symlink itself,
 * never its target), so a reader sees the old file or the new one, never half of one.
 * Codes: FILE_EXISTS (the path exists and force is not set), FILE_WRITE (any other
 * failure; the message names the path and the system's reason).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "payhsm.h"

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

static int write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    s += w;
    n -= (size_t)w;
  }
  return 1;
}

/* Creates path (which must not exist) holding text; 0 with errno set on failure. */
static int create_private(const char *path, const char *text, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, S_IRUSR | S_IWUSR);
  int ok, saved;
  if (fd < 0) return 0;
  ok = fchmod(fd, S_IRUSR | S_IWUSR) == 0 && write_all(fd, text, n) && fsync(fd) == 0;
  saved = errno;
  if (close(fd) != 0 && ok) { ok = 0; saved = errno; }
  if (!ok) {
    unlink(path);
    errno = saved;
  }
  return ok;
}

/*
 * write_secret_file(path, text [, opts]) -> true | nil, msg, code
 * Writes text to a new file of mode 0600 (O_CREAT|O_EXCL|O_NOFOLLOW); opts.force
 * replaces an existing file through a temporary file and rename(). Codes:
 * FILE_EXISTS, FILE_WRITE.
 */
static int file_write_secret(lua_State *L) {
  static const char fn[] = "write_secret_file";
  static const char *const fields[] = {"force", NULL};
  size_t plen, n;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *text = luaL_checklstring(L, 2, &n);
  int force = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    payhsm_checkfields(L, 3, fn, fields);
    lua_getfield(L, 3, "force");
    force = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (plen == 0 || strlen(path) != plen) return luaL_argerror(L, 1, "a file path without NUL bytes");
  if (!force) {
    if (create_private(path, text, n)) { lua_pushboolean(L, 1); return 1; }
    if (errno == EEXIST)
      return payhsm_fail(L, fn, "FILE_EXISTS", "%s exists (pass force to replace it)", path);
    return payhsm_fail(L, fn, "FILE_WRITE", "cannot create %s (%s)", path, strerror(errno));
  } else {
    unsigned char rnd[6];
    char *tmp = lua_newuserdatauv(L, plen + 32, 0);
    int tries, ok = 0;
    for (tries = 0; tries < 8 && !ok; tries++) {
      if (RAND_bytes(rnd, sizeof rnd) != 1) return payhsm_raise_ossl(L, fn);
      snprintf(tmp, plen + 32, "%s.tmp-%02x%02x%02x%02x%02x%02x", path, rnd[0], rnd[1], rnd[2], rnd[3],
               rnd[4], rnd[5]);
      ok = create_private(tmp, text, n);
      if (!ok && errno != EEXIST) break;
    }
    if (!ok) return payhsm_fail(L, fn, "FILE_WRITE", "cannot create a file beside %s (%s)", path, strerror(errno));
    if (rename(tmp, path) != 0) {
      int saved = errno;
      unlink(tmp);
      return payhsm_fail(L, fn, "FILE_WRITE", "cannot replace %s (%s)", path, strerror(saved));
    }
    lua_pushboolean(L, 1);
    return 1;
  }
}

void payhsm_file_open(lua_State *L) {
  lua_pushcfunction(L, file_write_secret);
  lua_setfield(L, -2, "write_secret_file");
}
