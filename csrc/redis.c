/*
 * redis.c - payhsm.redis: a small synchronous Redis client on hiredis, for the
 * redis store backend (lua/payhsm/store/redis.lua).
 *
 * Lua: local redis = require "payhsm.redis"
 *      local conn = redis.connect(host, port [, timeout_ms])
 *                   -> conn | nil, msg, "REDIS_CONNECT"
 *      conn:command(arg1, arg2, ...) -> reply | nil, msg, code
 *      conn:close()                    (also __gc and __close; idempotent)
 * Arguments are sent as one argv with their byte lengths (redisCommandArgv), so keys
 * and values may hold any bytes, NUL included; numbers are sent as their decimal text.
 * Replies: bulk string -> string, integer -> integer, nil -> nil, status -> string
 * ("OK", "QUEUED"), array -> table. Inside an array a nil element becomes false (a
 * sequence cannot hold nil) and an error element becomes {err = msg}.
 * Codes: REDIS_CONNECT (connect failed), REDIS_ERROR (the server answered with an
 * error; the connection stays usable), REDIS_IO (the connection failed or timed out;
 * the connection is unusable afterwards and should be closed).
 * Misuse raises: a method on a closed connection, an argument that is not a string
 * or number.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h> /* via /usr/include: a system header, so its own -Wconversion noise stays out */

#include <lauxlib.h>
#include <lua.h>

#include "compat.h"

#define REDIS_MT "payhsm.Redis"

/* Arguments of one command held in C arrays on the stack when they fit. */
#define STACK_ARGS 16

typedef struct {
  redisContext *c; /* NULL once closed */
} redis_conn;

static redis_conn *check_conn(lua_State *L) {
  redis_conn *rc = (redis_conn *)luaL_checkudata(L, 1, REDIS_MT);
  if (!rc->c) luaL_error(L, "redis connection has been closed");
  return rc;
}

static int fail(lua_State *L, const char *fn, const char *code, const char *msg) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", fn, msg);
  lua_pushstring(L, code);
  return 3;
}

static struct timeval ms_to_tv(lua_Integer ms) {
  struct timeval tv;
  tv.tv_sec = (time_t)(ms / 1000);
  tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
  return tv;
}

/*
 * redis.connect(host, port [, timeout_ms]) -> conn | nil, msg, "REDIS_CONNECT"
 * timeout_ms (default 5000) bounds the connect and then every command's reply.
 */
static int redis_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  lua_Integer ms = luaL_optinteger(L, 3, 5000);
  struct timeval tv;
  redis_conn *rc;
  luaL_argcheck(L, port > 0 && port <= 65535, 2, "port must be 1 to 65535");
  luaL_argcheck(L, ms > 0, 3, "timeout must be positive");
  tv = ms_to_tv(ms);
  rc = (redis_conn *)lua_newuserdatauv(L, sizeof *rc, 0);
  rc->c = NULL;
  luaL_setmetatable(L, REDIS_MT);
  rc->c = redisConnectWithTimeout(host, (int)port, tv);
  if (!rc->c) return fail(L, "redis.connect", "REDIS_CONNECT", "out of memory");
  if (rc->c->err) {
    lua_pushfstring(L, "%s:%d: %s", host, (int)port, rc->c->errstr);
    redisFree(rc->c);
    rc->c = NULL;
    return fail(L, "redis.connect", "REDIS_CONNECT", lua_tostring(L, -1));
  }
  if (redisSetTimeout(rc->c, tv) != REDIS_OK) {
    redisFree(rc->c);
    rc->c = NULL;
    return fail(L, "redis.connect", "REDIS_CONNECT", "cannot set the timeout");
  }
  return 1;
}

/* Nesting depth of a reply (1 for a scalar). */
static int reply_depth(const redisReply *r) {
  int d = 0, sub;
  size_t i;
  if (r->type != REDIS_REPLY_ARRAY) return 1;
  for (i = 0; i < r->elements; i++) {
    sub = reply_depth(r->element[i]);
    if (sub > d) d = sub;
    if (d > 10000) break;
  }
  return d + 1;
}

/* Pushes one reply. top: whether it is the whole reply (nil and errors differ inside arrays). */
static void push_reply(lua_State *L, const redisReply *r, int top) {
  size_t i;
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, r->str, (size_t)r->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushinteger(L, (lua_Integer)r->integer);
    break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, r->elements > 0x7fffffff ? 0 : (int)r->elements, 0);
    for (i = 0; i < r->elements; i++) {
      push_reply(L, r->element[i], 0);
      lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    break;
  case REDIS_REPLY_ERROR:
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, r->str, (size_t)r->len);
    lua_setfield(L, -2, "err");
    break;
  default: /* REDIS_REPLY_NIL */
    if (top) lua_pushnil(L);
    else lua_pushboolean(L, 0);
    break;
  }
}

/*
 * conn:command(arg1, arg2, ...) -> reply | nil, msg, "REDIS_ERROR" | nil, msg, "REDIS_IO"
 * Sends one command (binary-safe argv) and waits for its reply.
 */
static int redis_command(lua_State *L) {
  redis_conn *rc = check_conn(L);
  int argc = lua_gettop(L) - 1, i;
  const char *sargv[STACK_ARGS];
  size_t slen[STACK_ARGS];
  const char **argv = sargv;
  size_t *argvlen = slen;
  redisReply *r;
  if (argc < 1) return luaL_error(L, "conn:command: a command name is required");
  if (argc > STACK_ARGS) {
    argv = (const char **)lua_newuserdatauv(L, (size_t)argc * sizeof *argv, 0);
    argvlen = (size_t *)lua_newuserdatauv(L, (size_t)argc * sizeof *argvlen, 0);
  }
  for (i = 0; i < argc; i++) {
    int t = lua_type(L, i + 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      return luaL_argerror(L, i + 2, "string or number expected");
    argv[i] = lua_tolstring(L, i + 2, &argvlen[i]);
  }
  r = (redisReply *)redisCommandArgv(rc->c, argc, argv, argvlen);
  if (!r) return fail(L, "conn:command", "REDIS_IO", rc->c->err ? rc->c->errstr : "no reply");
  if (r->type == REDIS_REPLY_ERROR) {
    lua_pushnil(L);
    lua_pushfstring(L, "conn:command: %s", r->str);
    lua_pushliteral(L, "REDIS_ERROR");
    freeReplyObject(r);
    return 3;
  }
  /* Stack room for the deepest nesting is reserved before pushing, so that only an
   * out-of-memory raise could leave the reply unfreed. */
  if (!lua_checkstack(L, 2 * reply_depth(r) + 2)) {
    freeReplyObject(r);
    return luaL_error(L, "conn:command: reply nested too deep");
  }
  push_reply(L, r, 1);
  freeReplyObject(r);
  return 1;
}

/* conn:close(): closes the connection (also __gc and __close). Safe to call twice. */
static int redis_close(lua_State *L) {
  redis_conn *rc = (redis_conn *)luaL_checkudata(L, 1, REDIS_MT);
  if (rc->c) {
    redisFree(rc->c);
    rc->c = NULL;
  }
  return 0;
}

/* tostring(conn) -> "payhsm.Redis (open)" / "payhsm.Redis (closed)" */
static int redis_tostring(lua_State *L) {
  redis_conn *rc = (redis_conn *)luaL_checkudata(L, 1, REDIS_MT);
  lua_pushfstring(L, "%s (%s)", REDIS_MT, rc->c ? "open" : "closed");
  return 1;
}

int luaopen_payhsm_redis(lua_State *L);
int luaopen_payhsm_redis(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"command", redis_command}, {"close", redis_close}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"connect", redis_connect}, {NULL, NULL}};
  luaL_newmetatable(L, REDIS_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, redis_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, redis_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, redis_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
