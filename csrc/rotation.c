/*
 * rotation.c - the session-key rotation state of the host-to-host Master Session
 * Key gateway (Fiserv's host-to-host MSK API, "Session Key Rotation").
 *
 * The gateway keeps a fixed set of static key IDs per session key label (three:
 * e.g. 1001, 1002, 1003), each with a version. The versions are always a
 * permutation of 1..n, shown as "1.0", "2.0", "3.0". A new key goes into the ID
 * with the lowest version, that ID becomes the highest version, and every other
 * ID moves down by one. The ID with the highest version is the active key.
 * Reading of Fiserv's API where it is silent: a new state gives the IDs versions
 * 1..n in the order listed, all empty, so the first imports fill the IDs in
 * order (1001, then 1002, then 1003) and later ones replace the oldest key.
 * Empty IDs are not listed and cannot be active.
 *
 * Lua: core.rotation.new({ids = {"1001", "1002", "1003"}}) -> state
 *      state:import(entry) -> id, version     entry: table of string fields
 *      state:active() -> id, entry, version   (nil when nothing was imported)
 *      state:get(id) -> entry, version        (nil when the ID is empty or unknown)
 *      state:list() -> {{id=, version=, entry=}, ...} highest version first
 *      state:snapshot() -> string;  core.rotation.restore(string) -> state | nil, msg, code
 * Snapshot format (text, one record per line, every string hex-encoded so no
 * value can break the framing):
 *      payhsm-rotation 1 <n>
 *      <id-hex> <version> -                      (an empty slot)
 *      <id-hex> <version> <k-hex>=<v-hex>,...    (a filled slot; "=" alone: no fields)
 * Codes: ROTATION_SNAPSHOT (malformed snapshot).
 */
#include <stdlib.h>
#include <string.h>

#include "payhsm.h"

#define ROTATION_MT "payhsm.Rotation"
#define MAX_IDS 16
#define MAX_ID_LEN 64

typedef struct {
  int n;
  char ids[MAX_IDS][MAX_ID_LEN + 1];
  int version[MAX_IDS]; /* 1..n, a permutation */
  int filled[MAX_IDS];
} rot_state;

/* The entries live in the userdata's user value: a table slot index -> entry table. */
static rot_state *push_state(lua_State *L) {
  rot_state *s = lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, ROTATION_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  return s;
}

static rot_state *check_state(lua_State *L) {
  return (rot_state *)luaL_checkudata(L, 1, ROTATION_MT);
}

static void push_version(lua_State *L, int v) { lua_pushfstring(L, "%d.0", v); }

/* Pushes a copy of the entry stored for slot i. */
static void push_entry(lua_State *L, int i) {
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, i + 1);
  lua_remove(L, -2);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
}

static void check_id_length(lua_State *L, size_t n) {
  if (n == 0 || n > MAX_ID_LEN) luaL_error(L, "rotation: key IDs must be 1 to %d characters", MAX_ID_LEN);
}

/* core.rotation.new({ids = {...}}) -> state. Raises on a malformed ID list. */
static int rotation_new(lua_State *L) {
  rot_state *s;
  lua_Integer n, i, j;
  static const char *const fields[] = {"ids", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  payhsm_checkfields(L, 1, "rotation.new", fields);
  if (lua_getfield(L, 1, "ids") != LUA_TTABLE) return luaL_error(L, "rotation.new: ids must be a list");
  n = luaL_len(L, -1);
  if (n < 1 || n > MAX_IDS) return luaL_error(L, "rotation.new: 1 to %d key IDs", MAX_IDS);
  s = push_state(L);
  s->n = (int)n;
  for (i = 0; i < n; i++) {
    size_t len;
    const char *id;
    lua_rawgeti(L, -2, i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "rotation.new: key IDs must be strings");
    id = lua_tolstring(L, -1, &len);
    check_id_length(L, len);
    for (j = 0; j < i; j++)
      if (strcmp(s->ids[j], id) == 0) return luaL_error(L, "rotation.new: duplicate key ID '%s'", id);
    memcpy(s->ids[i], id, len + 1);
    s->version[i] = (int)(i + 1);
    lua_pop(L, 1);
  }
  return 1;
}

/* state:import(entry) -> id, version. entry: table with string keys and string values. */
static int rotation_import(lua_State *L) {
  rot_state *s = check_state(L);
  int i, lo = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "rotation: entry fields must be strings");
    lua_pop(L, 1);
  }
  for (i = 1; i < s->n; i++)
    if (s->version[i] < s->version[lo]) lo = i;
  for (i = 0; i < s->n; i++)
    if (i != lo) s->version[i]--;
  s->version[lo] = s->n;
  s->filled[lo] = 1;
  lua_getiuservalue(L, 1, 1);
  lua_newtable(L); /* store a copy: later changes to the caller's table do not leak in */
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_rawseti(L, -2, lo + 1);
  lua_pop(L, 1);
  lua_pushstring(L, s->ids[lo]);
  push_version(L, s->n);
  return 2;
}

/* state:active() -> id, entry, version, or nil when no key was imported. */
static int rotation_active(lua_State *L) {
  rot_state *s = check_state(L);
  int i;
  for (i = 0; i < s->n; i++)
    if (s->version[i] == s->n && s->filled[i]) {
      lua_pushstring(L, s->ids[i]);
      push_entry(L, i);
      push_version(L, s->n);
      return 3;
    }
  lua_pushnil(L);
  return 1;
}

/* state:get(id) -> entry, version, or nil when the ID is empty or unknown. */
static int rotation_get(lua_State *L) {
  rot_state *s = check_state(L);
  const char *id = luaL_checkstring(L, 2);
  int i;
  for (i = 0; i < s->n; i++)
    if (strcmp(s->ids[i], id) == 0 && s->filled[i]) {
      push_entry(L, i);
      push_version(L, s->version[i]);
      return 2;
    }
  lua_pushnil(L);
  return 1;
}

/* state:list() -> array of {id=, version=, entry=}, highest version first, filled IDs only. */
static int rotation_list(lua_State *L) {
  rot_state *s = check_state(L);
  int v, i, k = 0;
  lua_createtable(L, s->n, 0);
  for (v = s->n; v >= 1; v--)
    for (i = 0; i < s->n; i++)
      if (s->version[i] == v && s->filled[i]) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, s->ids[i]);
        lua_setfield(L, -2, "id");
        push_version(L, v);
        lua_setfield(L, -2, "version");
        push_entry(L, i);
        lua_setfield(L, -2, "entry");
        lua_rawseti(L, -2, ++k);
      }
  return 1;
}

/* state:ids() -> array of all IDs with their versions, filled or not: {{id=, version=, filled=}} */
static int rotation_ids(lua_State *L) {
  rot_state *s = check_state(L);
  int i;
  lua_createtable(L, s->n, 0);
  for (i = 0; i < s->n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, s->ids[i]);
    lua_setfield(L, -2, "id");
    push_version(L, s->version[i]);
    lua_setfield(L, -2, "version");
    lua_pushboolean(L, s->filled[i]);
    lua_setfield(L, -2, "filled");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static void add_hex(luaL_Buffer *b, const char *s, size_t n) {
  static const char d[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < n; i++) {
    luaL_addchar(b, d[(unsigned char)s[i] >> 4]);
    luaL_addchar(b, d[(unsigned char)s[i] & 15]);
  }
}

/* Sorted field names of an entry make the snapshot deterministic (names are the
 * first member of each field record). */
static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* state:snapshot() -> string (see the format at the top). */
static int rotation_snapshot(lua_State *L) {
  rot_state *s = check_state(L);
  luaL_Buffer b;
  int i;
  lua_getiuservalue(L, 1, 1);   /* index 2: entries */
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "payhsm-rotation 1 %d\n", s->n);
  luaL_addvalue(&b);
  for (i = 0; i < s->n; i++) {
    add_hex(&b, s->ids[i], strlen(s->ids[i]));
    lua_pushfstring(L, " %d ", s->version[i]);
    luaL_addvalue(&b);
    if (!s->filled[i]) {
      luaL_addstring(&b, "-\n");
      continue;
    }
    {
      /* Collect the fields first (the strings stay alive in the stored entry), then
       * add them: the stack must be balanced at every buffer operation. */
      struct { const char *k, *v; size_t kn, vn; } f[256];
      int n = 0, j;
      lua_rawgeti(L, 2, i + 1);
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (n == 256) luaL_error(L, "rotation: entries hold at most 256 fields");
        f[n].v = lua_tolstring(L, -1, &f[n].vn);
        f[n].k = lua_tolstring(L, -2, &f[n].kn);
        n++;
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
      qsort(f, (size_t)n, sizeof f[0], cmp_str);
      if (n == 0) luaL_addchar(&b, '=');
      for (j = 0; j < n; j++) {
        if (j) luaL_addchar(&b, ',');
        add_hex(&b, f[j].k, f[j].kn);
        luaL_addchar(&b, '=');
        add_hex(&b, f[j].v, f[j].vn);
      }
      luaL_addchar(&b, '\n');
    }
  }
  luaL_pushresult(&b);
  return 1;
}

/* Decodes hex [p, e) into a Lua string on the stack; 0 if not hex. */
static int push_unhex(lua_State *L, const char *p, const char *e) {
  luaL_Buffer b;
  size_t n = (size_t)(e - p), i;
  unsigned char *out;
  if (n % 2) return 0;
  out = (unsigned char *)luaL_buffinitsize(L, &b, n / 2 + 1);
  if (n && payhsm_hex_decode(p, n, out, n / 2) != n / 2) return 0;
  for (i = 0; i < n / 2; i++)
    if (out[i] == 0) return 0; /* strings with NUL are not valid IDs or fields */
  luaL_pushresultsize(&b, n / 2);
  return 1;
}

#define BAD(...) return payhsm_fail(L, "rotation.restore", "ROTATION_SNAPSHOT", __VA_ARGS__)

/* core.rotation.restore(snapshot) -> state | nil, msg, ROTATION_SNAPSHOT */
static int rotation_restore(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len), *end = p + len, *nl;
  rot_state *s;
  int n = 0, i, j, seen[MAX_IDS + 1] = {0};
  if (len < 19 || memcmp(p, "payhsm-rotation 1 ", 18) != 0) BAD("not a rotation snapshot");
  p += 18;
  while (p < end && *p >= '0' && *p <= '9' && n <= MAX_IDS) n = n * 10 + (*p++ - '0');
  if (n < 1 || n > MAX_IDS || p >= end || *p != '\n') BAD("bad key ID count");
  p++;
  lua_settop(L, 1);
  s = push_state(L); /* index 2 */
  lua_getiuservalue(L, 2, 1); /* index 3 */
  s->n = n;
  for (i = 0; i < n; i++) {
    const char *sp1, *sp2;
    int v = 0;
    if (p >= end || !(nl = memchr(p, '\n', (size_t)(end - p)))) BAD("slot %d is missing", i + 1);
    if (!(sp1 = memchr(p, ' ', (size_t)(nl - p))) || !(sp2 = memchr(sp1 + 1, ' ', (size_t)(nl - sp1 - 1))))
      BAD("slot %d is malformed", i + 1);
    if (sp1 == p || sp1 - p > 2 * MAX_ID_LEN || !push_unhex(L, p, sp1)) BAD("slot %d: bad key ID", i + 1);
    memcpy(s->ids[i], lua_tostring(L, -1), lua_rawlen(L, -1) + 1);
    lua_pop(L, 1);
    for (j = 0; j < i; j++)
      if (strcmp(s->ids[j], s->ids[i]) == 0) BAD("slot %d: duplicate key ID", i + 1);
    for (p = sp1 + 1; p < sp2 && *p >= '0' && *p <= '9' && v <= MAX_IDS; p++) v = v * 10 + (*p - '0');
    if (p != sp2 || v < 1 || v > n || seen[v]) BAD("slot %d: versions must be a permutation of 1..%d", i + 1, n);
    seen[v] = 1;
    s->version[i] = v;
    p = sp2 + 1;
    if (nl - p == 1 && *p == '-') {
      p = nl + 1;
      continue;
    }
    lua_newtable(L);
    if (!(nl - p == 1 && *p == '=')) {
      while (p < nl) {
        const char *comma = memchr(p, ',', (size_t)(nl - p)), *eq;
        if (!comma) comma = nl;
        if (!(eq = memchr(p, '=', (size_t)(comma - p))) || eq == p) BAD("slot %d: malformed field", i + 1);
        if (!push_unhex(L, p, eq) || !push_unhex(L, eq + 1, comma)) BAD("slot %d: field is not hex", i + 1);
        lua_rawset(L, -3);
        p = comma == nl ? nl : comma + 1;
        if (comma != nl && p == nl) BAD("slot %d: trailing comma", i + 1);
      }
    }
    lua_rawseti(L, 3, i + 1);
    s->filled[i] = 1;
    p = nl + 1;
  }
  if (p != end) BAD("trailing data after %d slots", n);
  lua_settop(L, 2);
  return 1;
}

void payhsm_rotation_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"import", rotation_import}, {"active", rotation_active}, {"get", rotation_get},
    {"list", rotation_list}, {"ids", rotation_ids}, {"snapshot", rotation_snapshot}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"new", rotation_new}, {"restore", rotation_restore}, {NULL, NULL}};
  luaL_newmetatable(L, ROTATION_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "payhsm.Rotation");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "rotation");
}
