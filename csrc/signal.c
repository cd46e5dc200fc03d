/*
 * signal.c - SIGINT, SIGTERM and SIGHUP for the REPL and the servers.
 *
 * Lua: core.catch_signals(names [, interrupt]) -> true
 *      core.caught_signal() -> "INT" | "TERM" | "HUP" | nil
 * catch_signals installs a handler (sigaction, without SA_RESTART, so a blocking read
 * or poll returns EINTR) that records the signal; caught_signal returns and clears
 * the oldest one recorded. A server's loop checks it between requests and stops
 * cleanly. With interrupt = true, the handler also sets a hook on the Lua state that
 * called catch_signals which raises "interrupted" at its next instruction (as the
 * standalone lua does for Ctrl-C, but the handler stays installed, so a second
 * Ctrl-C interrupts again instead of killing the process). lua_sethook is the one Lua
 * call that is safe in a signal handler (Lua 5.4 manual, lua_sethook).
 *
 * The worker processes of `serve --workers N` (POSIX.1-2017 fork, waitpid, kill):
 *      core.listen_socket(host, port [, reuseport]) -> fd, port   a bound, listening IPv4 TCP socket
 *      core.close_fd(fd)
 *      core.fork() -> pid (0 in the child)          stdio is flushed first
 *      core.wait_child(ms) -> pid, "exit" | "signal", code | nil  (nil after ms or on a signal)
 *      core.kill(pid, "TERM" | "KILL" | "INT" | "HUP") -> true | nil, message
 *      core.getpid() -> pid
 * The parent binds one socket per worker, each with SO_REUSEPORT (Linux socket(7)), so
 * the kernel spreads new connections over the workers' accept queues instead of letting
 * whichever worker wakes first take them all. The parent keeps every socket open, so the
 * port stays bound while a worker restarts, and the connections queued on a restarting
 * worker's socket wait for its successor.
 * A forked child forgets the parent's caught signals and, on Linux, gets SIGTERM when
 * its parent dies (prctl PR_SET_PDEATHSIG), so a killed parent leaves no workers behind.
 */
#define _DEFAULT_SOURCE /* SO_REUSEPORT (glibc hides it under strict POSIX) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "payhsm.h"

static const char *const sig_names[] = {"INT", "TERM", "HUP", NULL};
static const int sig_numbers[] = {SIGINT, SIGTERM, SIGHUP};

static volatile sig_atomic_t pending[3];
static volatile sig_atomic_t interrupt_on[3];
static lua_State *volatile hook_state;

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted");
}

static void on_signal(int sig) {
  int i;
  for (i = 0; i < 3; i++) {
    if (sig_numbers[i] != sig) continue;
    pending[i] = 1;
    if (interrupt_on[i] && hook_state)
      lua_sethook(hook_state, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
}

/*
 * catch_signals(names [, interrupt]) -> true
 * names: a list of "INT", "TERM", "HUP". Records each for caught_signal(); with
 * interrupt, a signal also raises "interrupted" in the running Lua code.
 */
static int signal_catch(lua_State *L) {
  lua_Integer i, n;
  int interrupt;
  luaL_checktype(L, 1, LUA_TTABLE);
  interrupt = lua_toboolean(L, 2);
  n = luaL_len(L, 1);
  if (interrupt) hook_state = L;
  for (i = 1; i <= n; i++) {
    struct sigaction sa;
    int s;
    lua_rawgeti(L, 1, i);
    s = payhsm_checkname(L, -1, "signal", sig_names);
    lua_pop(L, 1);
    interrupt_on[s] = interrupt;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocked read or poll returns EINTR */
    if (sigaction(sig_numbers[s], &sa, NULL) != 0) return luaL_error(L, "catch_signals: sigaction failed");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* caught_signal() -> name | nil: the first signal recorded since the last call, cleared. */
static int signal_caught(lua_State *L) {
  int i;
  for (i = 0; i < 3; i++) {
    if (pending[i]) {
      pending[i] = 0;
      lua_pushstring(L, sig_names[i]);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

/*
 * listen_socket(host, port [, reuseport]) -> fd, port
 * An IPv4 TCP socket bound to host:port (port 0: any free one; SO_REUSEADDR), listening,
 * non-blocking, close-on-exec; the port is the one bound. With reuseport = true the
 * socket also has SO_REUSEPORT, so further sockets of this user may bind the same port
 * and the kernel balances connections over them. Returns nil, message when the address
 * cannot be bound (a busy port, a privileged one).
 */
static int proc_listen(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  int reuseport = lua_toboolean(L, 3);
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  int fd, one = 1, e;
  if (port < 0 || port > 65535) return luaL_error(L, "listen_socket: bad port");
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return luaL_error(L, "listen_socket: host must be an IPv4 address");
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) goto fail;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
#ifdef SO_REUSEPORT
  if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) goto fail;
#else
  if (reuseport) { errno = ENOTSUP; goto fail; }
#endif
  if (bind(fd, (const struct sockaddr *)(const void *)&addr, sizeof addr) != 0 || listen(fd, 511) != 0 ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ||
      getsockname(fd, (struct sockaddr *)(void *)&addr, &len) != 0)
    goto fail;
  lua_pushinteger(L, fd);
  lua_pushinteger(L, ntohs(addr.sin_port));
  return 2;
fail:
  e = errno;
  if (fd >= 0) close(fd);
  lua_pushnil(L);
  lua_pushfstring(L, "cannot listen on %s:%d: %s%s", host, (int)port, strerror(e),
                  e == EADDRINUSE ? " (another process is serving that port)" :
                  e == EACCES ? " (ports below 1024 need privileges)" : "");
  return 2;
}

/* close_fd(fd): closes a descriptor from listen_socket. */
static int proc_close_fd(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

/*
 * fork() -> pid: 0 in the child, the child's pid in the parent; raises when fork fails.
 * C stdio is flushed first so buffered output is not written twice.
 */
static int proc_fork(lua_State *L) {
  pid_t pid;
  fflush(NULL);
  pid = fork();
  if (pid < 0) return luaL_error(L, "fork failed: %s", strerror(errno));
  if (pid == 0) {
    int i;
    for (i = 0; i < 3; i++) pending[i] = 0;
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
  }
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

/*
 * wait_child(ms) -> pid, "exit", code | pid, "signal", name-or-number | nil
 * Reaps one ended child, waiting up to ms (0: only looks); nil when none ended in that
 * time or a caught signal (catch_signals) arrived meanwhile.
 */
static int proc_wait_child(lua_State *L) {
  lua_Integer ms = luaL_optinteger(L, 1, 0);
  struct timespec slice = {0, 10 * 1000000L};
  for (;;) {
    int st = 0, i, sig_seen = 0;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      lua_pushinteger(L, (lua_Integer)pid);
      if (WIFEXITED(st)) {
        lua_pushliteral(L, "exit");
        lua_pushinteger(L, WEXITSTATUS(st));
      } else {
        int s = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        lua_pushliteral(L, "signal");
        if (s == SIGKILL) lua_pushliteral(L, "KILL");
        else if (s == SIGTERM) lua_pushliteral(L, "TERM");
        else if (s == SIGSEGV) lua_pushliteral(L, "SEGV");
        else if (s == SIGABRT) lua_pushliteral(L, "ABRT");
        else lua_pushinteger(L, s);
      }
      return 3;
    }
    for (i = 0; i < 3; i++) sig_seen |= pending[i];
    if (sig_seen || ms <= 0) break;
    nanosleep(&slice, NULL);
    ms -= 10;
  }
  lua_pushnil(L);
  return 1;
}

/* kill(pid, name) -> true | nil, message: sends SIGTERM, SIGKILL, SIGINT or SIGHUP. */
static int proc_kill(lua_State *L) {
  static const char *const names[] = {"INT", "TERM", "HUP", "KILL", NULL};
  static const int numbers[] = {SIGINT, SIGTERM, SIGHUP, SIGKILL};
  lua_Integer pid = luaL_checkinteger(L, 1);
  int s = payhsm_checkname(L, 2, "signal", names);
  if (pid <= 0) return luaL_error(L, "kill: pid must be positive");
  if (kill((pid_t)pid, numbers[s]) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* getpid() -> this process's id */
static int proc_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

void payhsm_signal_open(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"catch_signals", signal_catch}, {"caught_signal", signal_caught}, {"listen_socket", proc_listen},
    {"close_fd", proc_close_fd}, {"fork", proc_fork}, {"wait_child", proc_wait_child},
    {"kill", proc_kill}, {"getpid", proc_getpid}, {NULL, NULL}};
  const luaL_Reg *f;
  for (f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
