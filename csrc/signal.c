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
 */
#include <signal.h>
#include <string.h>

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

void payhsm_signal_open(lua_State *L) {
  lua_pushcfunction(L, signal_catch);
  lua_setfield(L, -2, "catch_signals");
  lua_pushcfunction(L, signal_caught);
  lua_setfield(L, -2, "caught_signal");
}
