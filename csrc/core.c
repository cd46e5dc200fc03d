/*
 * core.c - luaopen_payhsm_core and the helpers every area shares: hex at the
 * edge, the error convention (nil, message, CODE), option lookups and the
 * process-wide cache of OpenSSL algorithm objects.
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

void payhsm_hex_encode(const unsigned char *in, size_t len, char *out) {
  static char pairs[512];
  static int ready;
  size_t i;
  if (!ready) { /* idempotent: a race writes the same bytes */
    static const char digits[] = "0123456789ABCDEF";
    for (i = 0; i < 256; i++) {
      pairs[2 * i] = digits[i >> 4];
      pairs[2 * i + 1] = digits[i & 15];
    }
    ready = 1;
  }
  for (i = 0; i < len; i++) memcpy(out + 2 * i, pairs + 2 * in[i], 2);
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
static EVP_MD *mds[3];

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
    default: return NULL;
  }
}

static int fetch_algorithms(void) {
  static const char *const names[2][4] = {
    {"DES-EDE3-ECB", "AES-128-ECB", "AES-192-ECB", "AES-256-ECB"},
    {"DES-EDE3-CBC", "AES-128-CBC", "AES-192-CBC", "AES-256-CBC"}};
  static const char *const mdnames[3] = {"SHA256", "SHA384", "SHA512"};
  int i, j;
  if (ciphers[0][0]) return 1;
  for (i = 0; i < 2; i++)
    for (j = 0; j < 4; j++)
      if (!(ciphers[i][j] = EVP_CIPHER_fetch(NULL, names[i][j], NULL))) return 0;
  for (i = 0; i < 3; i++)
    if (!(mds[i] = EVP_MD_fetch(NULL, mdnames[i], NULL))) return 0;
  return 1;
}

/*
 * random(n) -> hex: n public random bytes (1..4096) from the RAND_bytes pool, for
 * identifiers, nonces and tokens (keys come from key.generate, not from here).
 */
static int core_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char buf[4096];
  luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof buf, 1, "random: 1 to 4096 bytes");
  if (!payhsm_random(buf, (size_t)n)) return payhsm_raise_ossl(L, "random");
  payhsm_pushhex(L, buf, (size_t)n);
  OPENSSL_cleanse(buf, (size_t)n);
  return 1;
}

/*
 * equal(a, b) -> boolean: compares two strings in time that depends only on their
 * lengths (CRYPTO_memcmp), for passwords, tokens, KCVs and MACs held in Lua.
 */
static int core_equal(lua_State *L) {
  size_t la, lb;
  const char *a = luaL_checklstring(L, 1, &la);
  const char *b = luaL_checklstring(L, 2, &lb);
  lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
  return 1;
}

/*
 * luaopen_payhsm_core: the C module. Returns a table whose fields are the areas
 * (key, cipher, mac, kcv, tr31, pin, emv, as2805, zka, envelope, rotation, rsa, card, dukpt); the
 * friendly API in lua/payhsm/init.lua re-exports them.
 */
int luaopen_payhsm_core(lua_State *L);
int luaopen_payhsm_core(lua_State *L) {
  if (!fetch_algorithms()) return payhsm_raise_ossl(L, "payhsm.core");
  lua_newtable(L);
  payhsm_kcv_open(L);
  payhsm_key_open(L);
  payhsm_components_open(L);
  payhsm_cipher_open(L);
  payhsm_mac_open(L);
  payhsm_tr31_open(L);
  payhsm_pinblock_open(L);
  payhsm_pinverify_open(L); /* adds to the pin table pinblock made */
  payhsm_emv_open(L);
  payhsm_emvsm_open(L);
  payhsm_as2805_open(L);
  payhsm_zka_open(L);
  payhsm_envelope_open(L);
  payhsm_rotation_open(L);
  payhsm_rsa_open(L);
  payhsm_card_open(L);
  payhsm_dukpt_open(L);
  payhsm_tr34_open(L);
  payhsm_file_open(L);
  payhsm_signal_open(L);
  payhsm_sigv4_open(L);
  payhsm_pki_open(L);
  lua_pushcfunction(L, core_random);
  lua_setfield(L, -2, "random");
  lua_pushcfunction(L, core_equal);
  lua_setfield(L, -2, "equal");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "openssl");
  return 1;
}
