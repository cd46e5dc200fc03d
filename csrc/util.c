/*
 * util.c - the helpers every area shares: hex at the edge, the error convention
 * (nil, message, CODE), option lookups, public random bytes, the algorithm table
 * with its process-wide cache of OpenSSL algorithm objects, and the key argument
 * checks. It calls no other file of the module; core.c is the entry point.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <pthread.h>

#include "payhsm.h"

/* Hex digit values; 16 marks a non-hex character (bit 4 set). Filled once. */
static unsigned char hexval[256];
static pthread_once_t hexval_once = PTHREAD_ONCE_INIT;

static void hexval_init(void) {
  int i;
  for (i = 0; i < 256; i++) hexval[i] = 16;
  for (i = 0; i < 10; i++) hexval['0' + i] = (unsigned char)i;
  for (i = 0; i < 6; i++) {
    hexval['A' + i] = (unsigned char)(10 + i);
    hexval['a' + i] = (unsigned char)(10 + i);
  }
}

/* ---- public random bytes (IVs, padding, PIN block fill) -------------------
 * RAND_bytes costs about half a microsecond per call in OpenSSL 3 (parameter
 * lookups and a getpid() fork check), more than the cipher work of a TR-31 wrap.
 * Short requests are served from a per-thread pool that RAND_bytes refills 4 KiB
 * at a time; a fork empties the child's pool (pthread_atfork), so parent and
 * child never hand out the same bytes. Bytes are wiped from the pool as they are
 * handed out. Key material does not come from here (keys use RAND_priv_bytes). */
#define POOL 4096
static __thread unsigned char pool[POOL];
static __thread size_t pool_left; /* unread bytes at the end of pool */
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_forget(void) {
  OPENSSL_cleanse(pool, sizeof pool);
  pool_left = 0;
}

static void pool_init(void) { pthread_atfork(NULL, NULL, pool_forget); }

int payhsm_random(unsigned char *out, size_t n) {
  pthread_once(&pool_once, pool_init);
  if (n > 256) return RAND_bytes(out, (int)n) == 1;
  if (pool_left < n) {
    if (RAND_bytes(pool, POOL) != 1) return 0;
    pool_left = POOL;
  }
  memcpy(out, pool + POOL - pool_left, n);
  OPENSSL_cleanse(pool + POOL - pool_left, n);
  pool_left -= n;
  return 1;
}

size_t payhsm_hex_decode(const char *restrict hex, size_t len, unsigned char *restrict out, size_t cap) {
  size_t i, n;
  unsigned bad = 0;
  const unsigned char *h = (const unsigned char *)hex;
  if (len % 2 != 0 || len / 2 > cap) return (size_t)-1;
  pthread_once(&hexval_once, hexval_init);
  n = len / 2;
  for (i = 0; i < n; i++) { /* branch-free; a non-hex character sets bit 4 of bad */
    unsigned hi = hexval[h[2 * i]], lo = hexval[h[2 * i + 1]];
    bad |= hi | lo;
    out[i] = (unsigned char)((hi << 4) | (lo & 15u));
  }
  return (bad & 16u) ? (size_t)-1 : n;
}

/* Upper-case hex pairs of every byte value. Filled once. */
static char hexpairs[512];
static pthread_once_t hexpairs_once = PTHREAD_ONCE_INIT;

static void hexpairs_init(void) {
  static const char digits[] = "0123456789ABCDEF";
  int i;
  for (i = 0; i < 256; i++) {
    hexpairs[2 * i] = digits[i >> 4];
    hexpairs[2 * i + 1] = digits[i & 15];
  }
}

void payhsm_hex_encode(const unsigned char *in, size_t len, char *out) {
  size_t i;
  pthread_once(&hexpairs_once, hexpairs_init);
  for (i = 0; i < len; i++) memcpy(out + 2 * i, hexpairs + 2 * in[i], 2);
}

int payhsm_hex_digit(char c) {
  unsigned v;
  pthread_once(&hexval_once, hexval_init);
  v = hexval[(unsigned char)c];
  return v < 16 ? (int)v : -1;
}

void payhsm_pushhex(lua_State *L, const unsigned char *in, size_t len) {
  char small[256];
  if (len <= sizeof small / 2) {
    payhsm_hex_encode(in, len, small);
    lua_pushlstring(L, small, 2 * len);
  } else {
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, 2 * len);
    payhsm_hex_encode(in, len, p);
    luaL_pushresultsize(&b, 2 * len);
  }
}

static int push_failure(lua_State *L, int asfalse, const char *fn, const char *code,
                        const char *fmt, va_list ap) {
  char msg[512];
  unsigned long e;
  int n = snprintf(msg, sizeof msg, "%s: ", fn);
  if (n < 0 || (size_t)n >= sizeof msg) n = 0;
  vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
  while ((e = ERR_get_error()) != 0) {
    size_t used = strlen(msg);
    if (used + 8 < sizeof msg) {
      msg[used++] = ' ';
      msg[used++] = '(';
      ERR_error_string_n(e, msg + used, sizeof msg - used - 1);
      used = strlen(msg);
      if (used + 1 < sizeof msg) { msg[used++] = ')'; msg[used] = 0; }
    }
  }
  if (asfalse) lua_pushboolean(L, 0); else lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, code);
  return 3;
}

int payhsm_fail(lua_State *L, const char *fn, const char *code, const char *fmt, ...) {
  va_list ap;
  int r;
  va_start(ap, fmt);
  r = push_failure(L, 0, fn, code, fmt, ap);
  va_end(ap);
  return r;
}

int payhsm_false(lua_State *L, const char *fn, const char *code, const char *fmt, ...) {
  va_list ap;
  int r;
  va_start(ap, fmt);
  r = push_failure(L, 1, fn, code, fmt, ap);
  va_end(ap);
  return r;
}

int payhsm_raise_ossl(lua_State *L, const char *fn) {
  char buf[256] = "unknown OpenSSL error";
  unsigned long e = ERR_get_error();
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return luaL_error(L, "%s: OpenSSL failure: %s", fn, buf);
}

size_t payhsm_hexarg(lua_State *L, int idx, const char *fn, const char *what,
                     unsigned char *buf, size_t cap) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  size_t n = payhsm_hex_decode(s, len, buf, cap);
  if (n == (size_t)-1) {
    if (len % 2 == 0 && len / 2 > cap)
      payhsm_fail(L, fn, "BAD_LENGTH", "%s is too long (%d bytes, at most %d)", what,
                  (int)(len / 2), (int)cap);
    else
      payhsm_fail(L, fn, "BAD_HEX", "%s is not valid hex", what);
  }
  return n;
}

size_t payhsm_hexarg_alloc(lua_State *L, int idx, const char *fn, const char *what,
                           size_t extra, unsigned char **out) {
  size_t len, n;
  const char *s = luaL_checklstring(L, idx, &len);
  unsigned char *buf = lua_newuserdatauv(L, len / 2 + extra + 1, 0);
  n = payhsm_hex_decode(s, len, buf, len / 2 + 1);
  *out = buf;
  if (n == (size_t)-1) {
    lua_pop(L, 1);
    payhsm_fail(L, fn, "BAD_HEX", "%s is not valid hex", what);
  }
  return n;
}

size_t payhsm_hexarg_scratch(lua_State *L, int idx, const char *fn, const char *what,
                             size_t extra, unsigned char *stackbuf, size_t cap,
                             unsigned char **out) {
  size_t len, n;
  const char *s = luaL_checklstring(L, idx, &len);
  if (len / 2 + extra > cap) return payhsm_hexarg_alloc(L, idx, fn, what, extra, out);
  n = payhsm_hex_decode(s, len, stackbuf, cap);
  *out = stackbuf;
  if (n == (size_t)-1) payhsm_fail(L, fn, "BAD_HEX", "%s is not valid hex", what);
  return n;
}

int payhsm_checkname(lua_State *L, int idx, const char *what, const char *const names[]) {
  const char *s = luaL_checkstring(L, idx);
  int i;
  luaL_Buffer b;
  for (i = 0; names[i]; i++)
    if (strcmp(names[i], s) == 0) return i;
  luaL_buffinit(L, &b);
  for (i = 0; names[i]; i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addstring(&b, names[i]);
  }
  luaL_pushresult(&b);
  return luaL_argerror(L, idx, lua_pushfstring(L, "unknown %s '%s' (expected one of: %s)", what, s,
                                               lua_tostring(L, -1)));
}

int payhsm_checkfields(lua_State *L, int idx, const char *fn, const char *const allowed[]) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int i, known = 0;
    lua_pop(L, 1); /* the value; the key stays for lua_next */
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *name = lua_tostring(L, -1);
      for (i = 0; allowed[i]; i++)
        if (strcmp(allowed[i], name) == 0) { known = 1; break; }
    }
    if (!known) {
      luaL_Buffer b;
      const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                        : luaL_typename(L, -1);
      luaL_buffinit(L, &b);
      for (i = 0; allowed[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, allowed[i]);
      }
      luaL_pushresult(&b);
      return luaL_error(L, "%s: unknown option '%s' (expected one of: %s)", fn, name,
                        lua_tostring(L, -1));
    }
  }
  return 0;
}

lua_Integer payhsm_optfield_int(lua_State *L, int idx, const char *field, lua_Integer def) {
  lua_Integer v = def;
  if (lua_type(L, idx) != LUA_TTABLE) return def;
  if (lua_getfield(L, idx, field) != LUA_TNIL) {
    int isnum;
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum) luaL_error(L, "field '%s' must be an integer", field);
  }
  lua_pop(L, 1);
  return v;
}

const char *payhsm_optfield_str(lua_State *L, int idx, const char *field, size_t *len) {
  const char *s = NULL;
  if (lua_type(L, idx) != LUA_TTABLE) return NULL;
  if (lua_getfield(L, idx, field) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "field '%s' must be a string", field);
    s = lua_tolstring(L, -1, len);
  }
  /* The string stays referenced by the table, so popping it keeps s valid
   * while the table is alive (the caller holds it on the stack). */
  lua_pop(L, 1);
  return s;
}

/* Algorithm objects, fetched once per process. DES-family keys always run on
 * DES-EDE3 (a DES key is expanded to K|K|K, a double-length key to K1|K2|K1), so
 * the legacy provider is never needed. */
static EVP_CIPHER *ciphers[2][4]; /* [cbc][des, aes128, aes192, aes256] */
static EVP_MD *mds[4];

const EVP_CIPHER *payhsm_cipher_for(payhsm_alg alg, int cbc) {
  int slot;
  switch (alg) {
    case PAYHSM_ALG_DES: case PAYHSM_ALG_TDES_2KEY: case PAYHSM_ALG_TDES_3KEY: slot = 0; break;
    case PAYHSM_ALG_AES_128: slot = 1; break;
    case PAYHSM_ALG_AES_192: slot = 2; break;
    case PAYHSM_ALG_AES_256: slot = 3; break;
    default: return NULL;
  }
  return ciphers[cbc ? 1 : 0][slot];
}

const EVP_MD *payhsm_md_for(payhsm_alg alg) {
  switch (alg) {
    case PAYHSM_ALG_HMAC_SHA256: return mds[0];
    case PAYHSM_ALG_HMAC_SHA384: return mds[1];
    case PAYHSM_ALG_HMAC_SHA512: return mds[2];
    case PAYHSM_ALG_HMAC_SHA224: return mds[3];
    default: return NULL;
  }
}

static int fetched;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_algorithms(void) {
  static const char *const names[2][4] = {
    {"DES-EDE3-ECB", "AES-128-ECB", "AES-192-ECB", "AES-256-ECB"},
    {"DES-EDE3-CBC", "AES-128-CBC", "AES-192-CBC", "AES-256-CBC"}};
  static const char *const mdnames[4] = {"SHA256", "SHA384", "SHA512", "SHA224"};
  int i, j;
  for (i = 0; i < 2; i++)
    for (j = 0; j < 4; j++)
      if (!(ciphers[i][j] = EVP_CIPHER_fetch(NULL, names[i][j], NULL))) return;
  for (i = 0; i < 4; i++)
    if (!(mds[i] = EVP_MD_fetch(NULL, mdnames[i], NULL))) return;
  fetched = 1;
}

int payhsm_algorithms_load(void) {
  pthread_once(&fetch_once, fetch_algorithms);
  return fetched;
}

/* ---- algorithm table ------------------------------------------------- */

static const struct {
  const char *name;
  payhsm_family fam;
  size_t len;
} algs[PAYHSM_ALG_COUNT] = {
  {"DES", PAYHSM_FAM_DES, 8},          {"TDES_2KEY", PAYHSM_FAM_DES, 16},
  {"TDES_3KEY", PAYHSM_FAM_DES, 24},   {"AES_128", PAYHSM_FAM_AES, 16},
  {"AES_192", PAYHSM_FAM_AES, 24},     {"AES_256", PAYHSM_FAM_AES, 32},
  {"HMAC_SHA256", PAYHSM_FAM_HMAC, 0}, {"HMAC_SHA384", PAYHSM_FAM_HMAC, 0},
  {"HMAC_SHA512", PAYHSM_FAM_HMAC, 0}, {"HMAC_SHA224", PAYHSM_FAM_HMAC, 0},
};

const char *payhsm_alg_name(payhsm_alg alg) { return algs[alg].name; }
payhsm_family payhsm_alg_family(payhsm_alg alg) { return algs[alg].fam; }
size_t payhsm_alg_keylen(payhsm_alg alg) { return algs[alg].len; }

int payhsm_alg_from_name(const char *name) {
  int i;
  for (i = 0; i < PAYHSM_ALG_COUNT; i++)
    if (strcmp(algs[i].name, name) == 0) return i;
  return -1;
}

size_t payhsm_key_blocksize(const payhsm_key *k) {
  switch (algs[k->alg].fam) {
    case PAYHSM_FAM_DES: return 8;
    case PAYHSM_FAM_AES: return 16;
    default: return 0;
  }
}

int payhsm_key_family_ok(const payhsm_key *k, unsigned mask) {
  return (mask & (1u << algs[k->alg].fam)) != 0;
}

void payhsm_des_parity(unsigned char *b, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned v = b[i] & 0xFEu, p = v;
    p ^= p >> 4; p ^= p >> 2; p ^= p >> 1;
    b[i] = (unsigned char)(v | (~p & 1u));
  }
}

payhsm_key *payhsm_testkey(lua_State *L, int idx) {
  return (payhsm_key *)luaL_testudata(L, idx, PAYHSM_KEY_MT);
}

payhsm_key *payhsm_checkkey(lua_State *L, int idx) {
  payhsm_key *k = (payhsm_key *)luaL_checkudata(L, idx, PAYHSM_KEY_MT);
  if (!k->bytes) luaL_error(L, "key has been closed");
  return k;
}
