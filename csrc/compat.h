/*
 * compat.h - the Lua C API differences between 5.1 (and LuaJIT 2.1), 5.2, 5.3 and 5.4,
 * in one place. payhsm is written against 5.4; this maps what it uses onto older
 * versions. Included by payhsm.h after lua.h and lauxlib.h.
 */
#ifndef PAYHSM_COMPAT_H
#define PAYHSM_COMPAT_H

#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

#ifndef LUA_OK
#define LUA_OK 0
#endif

/* ---- 5.4: user values and luaL_typeerror -------------------------------------- */
#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, sz, nuv) lua_newuserdata((L), (sz))
#define luaL_typeerror(L, arg, tname) \
  luaL_argerror((L), (arg), lua_pushfstring((L), "%s expected, got %s", (tname), luaL_typename((L), (arg))))
static inline int payhsm_compat_setiuservalue(lua_State *L, int idx) {
#if LUA_VERSION_NUM >= 502
  lua_setuservalue(L, idx);
  return 1;
#else /* 5.1: a userdata's environment table serves as its one user value */
  return lua_setfenv(L, idx);
#endif
}
#define lua_setiuservalue(L, idx, n) payhsm_compat_setiuservalue((L), (idx))
#if LUA_VERSION_NUM >= 502
#define lua_getiuservalue(L, idx, n) (lua_getuservalue((L), (idx)), lua_type((L), -1))
#else
#define lua_getiuservalue(L, idx, n) (lua_getfenv((L), (idx)), lua_type((L), -1))
#endif
#endif

/* ---- 5.3: the get functions return the type of the value they push ----------- */
#if LUA_VERSION_NUM < 503
#define lua_getfield(L, i, k) (lua_getfield((L), (i), (k)), lua_type((L), -1))
#define lua_rawgeti(L, i, n) (lua_rawgeti((L), (i), (int)(n)), lua_type((L), -1))
#define lua_rawseti(L, i, n) lua_rawseti((L), (i), (int)(n)) /* int indices before 5.3 */
#define lua_rawget(L, i) (lua_rawget((L), (i)), lua_type((L), -1))
#define lua_gettable(L, i) (lua_gettable((L), (i)), lua_type((L), -1))
#endif

/* ---- 5.2: lengths, sized buffers, function tables, metatable helpers --------- */
#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define luaL_len(L, i) ((lua_Integer)lua_objlen((L), (i)))

/* A sized buffer is a userdata on the stack until the result replaces it (the same
 * stack discipline as 5.2's box). */
static inline char *payhsm_compat_buffinitsize(lua_State *L, luaL_Buffer *B, size_t sz) {
  B->L = L;
  B->p = (char *)lua_newuserdata(L, sz ? sz : 1);
  return B->p;
}
static inline void payhsm_compat_pushresultsize(luaL_Buffer *B, size_t n) {
  lua_pushlstring(B->L, B->p, n);
  lua_remove(B->L, -2);
}
#define luaL_buffinitsize(L, B, sz) payhsm_compat_buffinitsize((L), (B), (sz))
#define luaL_pushresultsize(B, n) payhsm_compat_pushresultsize((B), (n))

static inline void payhsm_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#undef luaL_setfuncs
#define luaL_setfuncs(L, l, n) payhsm_compat_setfuncs((L), (l), (n))
#undef luaL_newlib
#define luaL_newlib(L, l) (lua_newtable(L), payhsm_compat_setfuncs((L), (l), 0))

static inline void payhsm_compat_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#undef luaL_setmetatable
#define luaL_setmetatable(L, t) payhsm_compat_setmetatable((L), (t))

static inline void *payhsm_compat_testudata(lua_State *L, int ud, const char *tname) {
  void *p = lua_touserdata(L, ud);
  if (p == NULL || !lua_getmetatable(L, ud)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#undef luaL_testudata
#define luaL_testudata(L, ud, t) payhsm_compat_testudata((L), (ud), (t))

static inline lua_Integer payhsm_compat_tointegerx(lua_State *L, int i, int *isnum) {
  lua_Integer n = lua_tointeger(L, i);
  if (isnum) *isnum = lua_isnumber(L, i) && (lua_Number)n == lua_tonumber(L, i);
  return n;
}
#undef lua_tointegerx
#define lua_tointegerx(L, i, isnum) payhsm_compat_tointegerx((L), (i), (isnum))
#endif

#endif
