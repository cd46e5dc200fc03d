/*
 * key.c - the payhsm.Key object: opaque userdata holding clear key bytes in C
 * memory, its TR-31 attributes (ANSI X9.143-2022 section 6.3: key usage, mode of
 * use, key version number, exportability), and the cipher contexts built once
 * per key and reused by every operation.
 *
 * Lua: core.key.import(algorithm, hex [, attrs]) -> key | nil, msg, code
 *      core.key.generate(algorithm [, attrs]) -> key
 *      core.policy{clear_export = bool}
 *      key.algorithm, key.bits, key.usage, key.mode, key.version, key.exportability,
 *      key.local_master
 *      key:kcv([alg]), key:export(), key:close(), tostring(key)
 */
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "payhsm.h"

/* The host's policy lives in each Lua state's registry (as lua-cjson keeps its
 * configuration per instance), so two states in one process do not share it. */
#define POLICY_CLEAR_EXPORT "payhsm.policy.clear_export"

int payhsm_clear_export_allowed(lua_State *L) {
  int allowed;
  lua_getfield(L, LUA_REGISTRYINDEX, POLICY_CLEAR_EXPORT);
  allowed = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  return allowed;
}

/* ---- TR-31 attribute vocabulary (X9.143-2022 Tables 6, 8, 10) -------- */

/* Key usages with the modes of use that make sense for them. */
static const struct { const char *usage; const char *modes; } usages[] = {
  {"B0", "XN"}, {"B1", "XN"}, {"B2", "XN"}, {"B3", "XN"},
  {"C0", "CGVN"},
  {"D0", "BDEN"}, {"D1", "BDEN"}, {"D2", "BDEN"}, {"D3", "BDEN"},
  {"E0", "XN"}, {"E1", "XN"}, {"E2", "XN"}, {"E3", "XN"}, {"E4", "XN"}, {"E5", "XN"},
  {"E6", "XN"}, {"E7", "XN"},
  {"I0", "N"},
  {"K0", "BDENX"}, {"K1", "BDENX"}, {"K2", "BDENST"}, {"K3", "BDENX"}, {"K4", "BDENX"},
  {"M0", "CGVN"}, {"M1", "CGVN"}, {"M2", "CGVN"}, {"M3", "CGVN"}, {"M4", "CGVN"},
  {"M5", "CGVN"}, {"M6", "CGVN"}, {"M7", "CGVN"}, {"M8", "CGVN"},
  {"P0", "BDEN"}, {"P1", "CGVN"},
  {"S0", "SVN"}, {"S1", "SVN"}, {"S2", "SVN"},
  {"V0", "CGVN"}, {"V1", "CGVN"}, {"V2", "CGVN"}, {"V3", "CGVN"}, {"V4", "CGVN"},
  {NULL, NULL}};

static const char all_modes[] = "BCDEGNSTVXY";

/* Returns the modes string for a usage, "" for proprietary numeric usages
 * (any mode), NULL for an unknown usage. */
const char *payhsm_usage_modes(const char *usage) {
  int i;
  if (usage[0] >= '0' && usage[0] <= '9' &&
      ((usage[1] >= '0' && usage[1] <= '9') || (usage[1] >= 'A' && usage[1] <= 'Z')))
    return "";
  if (!usage[0] || usage[2]) return NULL;
  for (i = 0; usages[i].usage; i++)
    if (usages[i].usage[0] == usage[0] && usages[i].usage[1] == usage[1]) return usages[i].modes;
  return NULL;
}

int payhsm_mode_known(char m) { return m && strchr(all_modes, m) != NULL; }

/* ---- the object ------------------------------------------------------ */

void payhsm_key_clear(payhsm_key *k) {
  EVP_CIPHER_CTX **ctxs[5];
  int i;
  ctxs[0] = &k->ecb_enc; ctxs[1] = &k->ecb_dec; ctxs[2] = &k->cbc_enc;
  ctxs[3] = &k->cbc_dec; ctxs[4] = &k->des_k1;
  for (i = 0; i < 5; i++) {
    EVP_CIPHER_CTX_free(*ctxs[i]); /* frees and cleanses the key schedule */
    *ctxs[i] = NULL;
  }
  EVP_MAC_CTX_free(k->hmac);
  k->hmac = NULL;
  if (k->tr31_cache && k->tr31_cache_free) k->tr31_cache_free(k->tr31_cache);
  k->tr31_cache = NULL;
  OPENSSL_cleanse(k->cmac_k1, sizeof k->cmac_k1);
  OPENSSL_cleanse(k->cmac_k2, sizeof k->cmac_k2);
  k->cmac_ready = 0;
  if (k->bytes) OPENSSL_secure_clear_free(k->bytes, k->len);
  k->bytes = NULL;
  k->len = 0;
}

int payhsm_key_init(payhsm_key *k, payhsm_alg alg, const unsigned char *bytes, size_t len) {
  memset(k, 0, sizeof *k);
  k->alg = alg;
  k->version[0] = '0';
  k->version[1] = '0';
  if (len == 0 || len > PAYHSM_MAX_KEY || !(k->bytes = OPENSSL_secure_malloc(len))) return 0;
  memcpy(k->bytes, bytes, len);
  k->len = len;
  return 1;
}

payhsm_key *payhsm_pushkey(lua_State *L, payhsm_alg alg, const unsigned char *bytes, size_t len) {
  payhsm_key *k = lua_newuserdatauv(L, sizeof *k, 0);
  memset(k, 0, sizeof *k);
  luaL_setmetatable(L, PAYHSM_KEY_MT);
  k->alg = alg;
  k->version[0] = '0';
  k->version[1] = '0';
  if (len == 0 || len > PAYHSM_MAX_KEY) luaL_error(L, "key length %d out of range", (int)len);
  k->bytes = OPENSSL_secure_malloc(len);
  if (!k->bytes) luaL_error(L, "out of secure memory");
  memcpy(k->bytes, bytes, len);
  k->len = len;
  return k;
}

int payhsm_key_usage(lua_State *L, const payhsm_key *k, const char *fn, const char *usages_ok,
                     const char *modes) {
  if (usages_ok && k->usage[0]) {
    const char *p = usages_ok;
    int found = 0;
    while (*p) {
      if (p[0] == k->usage[0] && p[1] == k->usage[1]) { found = 1; break; }
      p += 2;
      while (*p == ' ') p++;
    }
    if (!found)
      return payhsm_fail(L, fn, "KEY_USAGE", "key usage %s is not allowed here (needs %s)",
                         k->usage, usages_ok);
  }
  if (modes && k->mode && !strchr(modes, k->mode))
    return payhsm_fail(L, fn, "KEY_USAGE", "key mode of use %c is not allowed here (needs one of %s)",
                       k->mode, modes);
  return 0;
}

/* Validates and stores attributes; raises on malformed codes (programming error).
 * local_master = true marks the key as a store's local master key (LMK): it needs
 * usage K0 or K1 (X9.143 Table 6, key block protection), it is non-exportable (N,
 * set here), and it is the only KBPK tr31.wrap accepts with opts.local. The mark is
 * given when the key is made (import, generate, derive) and never taken off. */
void payhsm_key_setattrs(lua_State *L, payhsm_key *k, int idx) {
  size_t n;
  const char *s;
  const char *modes = NULL;
  static const char *const fields[] = {"usage", "mode", "version", "exportability", "local_master", NULL};
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  payhsm_checkfields(L, idx, "key attributes", fields);
  if ((s = payhsm_optfield_str(L, idx, "usage", &n))) {
    if (n != 2 || !(modes = payhsm_usage_modes(s)))
      luaL_error(L, "unknown TR-31 key usage '%s'", s);
    if (payhsm_alg_family(k->alg) == PAYHSM_FAM_HMAC ? (s[0] != 'M' || s[1] != '7') && modes[0]
                                            : (s[0] == 'M' && s[1] == '7'))
      luaL_error(L, "key usage %s does not fit a %s key", s, payhsm_alg_name(k->alg));
    memcpy(k->usage, s, 3);
  }
  if ((s = payhsm_optfield_str(L, idx, "mode", &n))) {
    if (n != 1 || !payhsm_mode_known(s[0])) luaL_error(L, "unknown TR-31 mode of use '%s'", s);
    if (modes && modes[0] && !strchr(modes, s[0]))
      luaL_error(L, "mode of use %s does not fit key usage %s", s, k->usage);
    k->mode = s[0];
  }
  if ((s = payhsm_optfield_str(L, idx, "version", &n))) {
    if (n != 2 || !(((s[0] >= '0' && s[0] <= '9') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == 'c')
                    && ((s[1] >= '0' && s[1] <= '9') || (s[1] >= 'A' && s[1] <= 'Z'))))
      luaL_error(L, "key version must be two alphanumeric characters, got '%s'", s);
    k->version[0] = s[0];
    k->version[1] = s[1];
  }
  if ((s = payhsm_optfield_str(L, idx, "exportability", &n))) {
    if (n != 1 || !strchr("ENS", s[0])) luaL_error(L, "exportability must be E, N or S, got '%s'", s);
    k->exportability = s[0];
  }
  if (lua_getfield(L, idx, "local_master") != LUA_TNIL) {
    if (!lua_isboolean(L, -1)) luaL_error(L, "key attributes: local_master must be a boolean");
    if (lua_toboolean(L, -1)) {
      if (k->usage[0] != 'K' || (k->usage[1] != '0' && k->usage[1] != '1'))
        luaL_error(L, "key attributes: a local master key needs usage K0 or K1");
      if (k->exportability && k->exportability != 'N')
        luaL_error(L, "key attributes: a local master key is non-exportable (exportability N)");
      k->exportability = 'N';
      k->local_master = 1;
    }
  }
  lua_pop(L, 1);
}

static payhsm_alg check_alg(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  int a = payhsm_alg_from_name(name);
  if (a < 0) {
    luaL_Buffer b;
    int i;
    luaL_buffinit(L, &b);
    for (i = 0; i < PAYHSM_ALG_COUNT; i++) {
      if (i) luaL_addstring(&b, ", ");
      luaL_addstring(&b, payhsm_alg_name((payhsm_alg)i));
    }
    luaL_pushresult(&b);
    luaL_argerror(L, idx, lua_pushfstring(L, "unknown key algorithm '%s' (expected one of: %s)", name,
                                          lua_tostring(L, -1)));
  }
  return (payhsm_alg)a;
}

/*
 * key.import(algorithm, hex [, attrs]) -> key
 * Bad hex -> nil, msg, "BAD_HEX"; a length that does not fit the algorithm ->
 * nil, msg, "KEY_LENGTH". DES parity is not enforced on import (test keys in
 * the standards often lack it). Unknown algorithm or malformed attrs raise.
 */
static int key_import(lua_State *L) {
  payhsm_alg alg = check_alg(L, 1);
  unsigned char buf[PAYHSM_MAX_KEY];
  lua_settop(L, 3);
  size_t n = payhsm_hexarg(L, 2, "key.import", "key", buf, sizeof buf);
  payhsm_key *k;
  if (n == (size_t)-1) return 3;
  if (payhsm_alg_keylen(alg) ? n != payhsm_alg_keylen(alg) : n < 1) {
    OPENSSL_cleanse(buf, sizeof buf);
    return payhsm_fail(L, "key.import", "KEY_LENGTH", "%s needs %d bytes, got %d", payhsm_alg_name(alg),
                       (int)(payhsm_alg_keylen(alg) ? payhsm_alg_keylen(alg) : 1), (int)n);
  }
  k = payhsm_pushkey(L, alg, buf, n);
  OPENSSL_cleanse(buf, sizeof buf);
  payhsm_key_setattrs(L, k, 3);
  return 1;
}

/*
 * key.generate(algorithm [, attrs]) -> key
 * Random bytes from RAND_priv_bytes. DES-family keys get odd parity and distinct
 * components; HMAC keys are as long as the digest output.
 */
static int key_generate(lua_State *L) {
  payhsm_alg alg = check_alg(L, 1);
  unsigned char buf[64];
  size_t n = payhsm_alg_keylen(alg);
  payhsm_key *k;
  lua_settop(L, 2);
  if (!n) n = (size_t)EVP_MD_get_size(payhsm_md_for(alg));
  for (;;) {
    if (RAND_priv_bytes(buf, (int)n) != 1) return payhsm_raise_ossl(L, "key.generate");
    if (payhsm_alg_family(alg) != PAYHSM_FAM_DES) break;
    payhsm_des_parity(buf, n);
    if (n == 8) break;
    if (CRYPTO_memcmp(buf, buf + 8, 8) != 0 &&
        (n == 16 || (CRYPTO_memcmp(buf + 8, buf + 16, 8) != 0 && CRYPTO_memcmp(buf, buf + 16, 8) != 0)))
      break;
  }
  k = payhsm_pushkey(L, alg, buf, n);
  OPENSSL_cleanse(buf, sizeof buf);
  payhsm_key_setattrs(L, k, 2);
  return 1;
}

/*
 * key.derive(kdk, algorithm, label, context [, attrs]) -> key
 * NIST SP 800-108r1 key-based KDF in counter mode (section 4.1): the PRF is
 * AES-CMAC for an AES key-derivation key and HMAC for an HMAC one; the input of
 * each PRF call is [i]_32 || label || 0x00 || context || [L]_32 (OpenSSL's KBKDF).
 * label and context are plain strings (may be empty). The derived key's bytes stay
 * in C; DES-family outputs get odd parity. The KDK must be AES or HMAC (raises
 * otherwise) and fit for any use or usage B0 (else nil, msg, "KEY_USAGE").
 */
static int key_derive(lua_State *L) {
  payhsm_key *kdk = payhsm_checkkey(L, 1);
  payhsm_alg alg = check_alg(L, 2);
  size_t llen, clen, n = payhsm_alg_keylen(alg);
  const char *label = luaL_checklstring(L, 3, &llen);
  const char *context = luaL_checklstring(L, 4, &clen);
  unsigned char buf[64];
  payhsm_key *k;
  int ok;
  lua_settop(L, 5);
  if (payhsm_key_usage(L, kdk, "key.derive", "B0", NULL)) return 3;
  if (!n) n = (size_t)EVP_MD_get_size(payhsm_md_for(alg));
  if (payhsm_alg_family(kdk->alg) == PAYHSM_FAM_DES)
    return luaL_argerror(L, 1, "key.derive: the key-derivation key must be AES or HMAC");
  ok = payhsm_kbkdf(kdk, (const unsigned char *)label, llen, (const unsigned char *)context, clen,
                    buf, n);
  if (!ok) {
    OPENSSL_cleanse(buf, sizeof buf);
    return payhsm_raise_ossl(L, "key.derive");
  }
  if (payhsm_alg_family(alg) == PAYHSM_FAM_DES) payhsm_des_parity(buf, n);
  k = payhsm_pushkey(L, alg, buf, n);
  OPENSSL_cleanse(buf, sizeof buf);
  payhsm_key_setattrs(L, k, 5);
  return 1;
}

/* key:export() -> hex. The one way to see clear bytes; raises when the host's
 * policy turned clear export off, and for a key marked non-exportable (TR-31
 * exportability N, ANSI X9.143-2022 6.3.7: such a key leaves only under the local
 * master key, never in clear). */
static int key_export(lua_State *L) {
  payhsm_key *k = payhsm_checkkey(L, 1);
  if (!payhsm_clear_export_allowed(L)) return luaL_error(L, "key:export: clear export is disabled by policy");
  if (k->exportability == 'N') return luaL_error(L, "key:export: the key is marked non-exportable (N)");
  payhsm_pushhex(L, k->bytes, k->len);
  return 1;
}

/* key:close(), __close, __gc: one idempotent wipe. */
static int key_close(lua_State *L) {
  payhsm_key *k = (payhsm_key *)luaL_checkudata(L, 1, PAYHSM_KEY_MT);
  payhsm_key_clear(k);
  return 0;
}

static int key_tostring(lua_State *L) {
  payhsm_key *k = (payhsm_key *)luaL_checkudata(L, 1, PAYHSM_KEY_MT);
  unsigned char kcv[3];
  char hex[7];
  if (!k->bytes) {
    lua_pushfstring(L, "payhsm.Key(%s, closed)", payhsm_alg_name(k->alg));
    return 1;
  }
  if (!payhsm_kcv_compute(L, k, payhsm_alg_family(k->alg) == PAYHSM_FAM_HMAC ? 2 : 0, kcv))
    return payhsm_raise_ossl(L, "key");
  payhsm_hex_encode(kcv, 3, hex);
  hex[6] = 0;
  lua_pushfstring(L, "payhsm.Key(%s, usage %s, KCV %s)", payhsm_alg_name(k->alg),
                  k->usage[0] ? k->usage : "any", hex);
  return 1;
}

/* __index: methods first (upvalue 1, one hash lookup on the hot path), then the
 * read-only attribute fields. */
static int key_index(lua_State *L) {
  payhsm_key *k;
  const char *f;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  k = (payhsm_key *)luaL_checkudata(L, 1, PAYHSM_KEY_MT);
  f = luaL_checkstring(L, 2);
  if (strcmp(f, "algorithm") == 0) lua_pushstring(L, payhsm_alg_name(k->alg));
  else if (strcmp(f, "bits") == 0) lua_pushinteger(L, (lua_Integer)(k->len * 8));
  else if (strcmp(f, "usage") == 0) { if (k->usage[0]) lua_pushstring(L, k->usage); else lua_pushnil(L); }
  else if (strcmp(f, "mode") == 0) { if (k->mode) lua_pushlstring(L, &k->mode, 1); else lua_pushnil(L); }
  else if (strcmp(f, "version") == 0) lua_pushlstring(L, k->version, 2);
  else if (strcmp(f, "exportability") == 0) {
    if (k->exportability) lua_pushlstring(L, &k->exportability, 1); else lua_pushnil(L);
  } else if (strcmp(f, "closed") == 0) lua_pushboolean(L, k->bytes == NULL);
  else if (strcmp(f, "local_master") == 0) lua_pushboolean(L, k->local_master);
  else lua_pushnil(L);
  return 1;
}

static int key_newindex(lua_State *L) {
  return luaL_error(L, "key fields are read-only");
}

/* policy{clear_export = bool} -> current policy table. One-way per Lua state: once
 * clear export is off it stays off (turning it back on raises), so code loaded later
 * in the same state cannot undo the host's decision. */
static int policy(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    static const char *const fields[] = {"clear_export", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    payhsm_checkfields(L, 1, "policy", fields);
    if (lua_getfield(L, 1, "clear_export") != LUA_TNIL) {
      luaL_checktype(L, -1, LUA_TBOOLEAN);
      if (lua_toboolean(L, -1) && !payhsm_clear_export_allowed(L))
        return luaL_error(L, "policy: clear export was turned off in this Lua state and cannot be turned back on");
      lua_pushboolean(L, lua_toboolean(L, -1));
      lua_setfield(L, LUA_REGISTRYINDEX, POLICY_CLEAR_EXPORT);
    }
    lua_pop(L, 1);
  }
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, payhsm_clear_export_allowed(L));
  lua_setfield(L, -2, "clear_export");
  return 1;
}

/* key.is_key(v) -> boolean */
static int key_is(lua_State *L) {
  payhsm_key *k = payhsm_testkey(L, 1);
  lua_pushboolean(L, k != NULL);
  return 1;
}

void payhsm_key_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"export", key_export}, {"close", key_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__newindex", key_newindex}, {"__gc", key_close},
    {"__close", key_close}, {"__tostring", key_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"import", key_import}, {"generate", key_generate}, {"derive", key_derive}, {"is_key", key_is}, {NULL, NULL}};
  luaL_newmetatable(L, PAYHSM_KEY_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_pushcfunction(L, payhsm_kcv);
  lua_setfield(L, -2, "kcv");
  lua_pushcclosure(L, key_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "payhsm.Key");
  lua_setfield(L, -2, "__name");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "key");
  lua_pushcfunction(L, policy);
  lua_setfield(L, -2, "policy");
}
