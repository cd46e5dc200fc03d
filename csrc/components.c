/*
 * components.c - keys formed from, and split into, clear components.
 *
 * A key ceremony loads a master key as two or more clear components, each held by a
 * different custodian; the key is their exclusive OR (ANSI X9.24-1:2017 clause 7.2
 * and annex on key components; payShield's "form key from components"). Each
 * custodian checks their component by its check value, and the formed key is checked
 * by its own. DES-family keys get odd parity after the XOR, as every HSM does: the
 * XOR of an even number of odd-parity components has even parity.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "payhsm.h"

#define MAX_COMPONENTS 9

static const char *const kcv_names[] = {"ANSI_X9_24", "CMAC", "HMAC", NULL};

/* The check value of bytes taken as a key of alg (kcv_alg as payhsm_kcv_compute). */
static int component_kcv(lua_State *L, payhsm_alg alg, const unsigned char *b, size_t n,
                         int kcv_alg, unsigned char out[3]) {
  payhsm_key tmp;
  int ok;
  memset(&tmp, 0, sizeof tmp);
  if (!payhsm_key_init(&tmp, alg, b, n)) return 0;
  ok = payhsm_kcv_compute(L, &tmp, kcv_alg, out);
  payhsm_key_clear(&tmp);
  return ok;
}

/*
 * key.from_components(algorithm, components [, attrs [, opts]]) -> key, report
 * Forms a key as the XOR of 2 to 9 clear components (array of hex strings, each the
 * key's length; ANSI X9.24-1 key components). DES-family results get odd parity.
 * attrs are the key's TR-31 attributes, as for key.import. opts.kcv_algorithm
 * ("ANSI_X9_24", "CMAC" or "HMAC"; default as key:kcv) names the check values in
 * report = {kcv = "XXXXXX", component_kcvs = {"XXXXXX", ...}} (one per component, in
 * order). Bad data: nil, msg, code with KEY_COMPONENTS (count, not a string),
 * BAD_HEX, KEY_LENGTH.
 */
static int key_from_components(lua_State *L) {
  static const char *const opt_fields[] = {"kcv_algorithm", NULL};
  static const char *const fn = "key.from_components";
  const char *algname = luaL_checkstring(L, 1);
  int a = payhsm_alg_from_name(algname), kcv_alg, i, count;
  size_t want, n, j;
  unsigned char acc[PAYHSM_MAX_KEY], part[PAYHSM_MAX_KEY], kcv[MAX_COMPONENTS + 1][3];
  payhsm_alg alg;
  payhsm_key *k;
  if (a < 0) return luaL_argerror(L, 1, lua_pushfstring(L, "unknown key algorithm '%s'", algname));
  alg = (payhsm_alg)a;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 4);
  if (!lua_isnil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  if (!lua_isnil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  payhsm_checkfields(L, 4, fn, opt_fields);
  want = payhsm_alg_keylen(alg);
  if (!want) want = (size_t)EVP_MD_get_size(payhsm_md_for(alg));
  kcv_alg = payhsm_alg_family(alg) == PAYHSM_FAM_HMAC ? 2 : 0;
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "kcv_algorithm");
    if (!lua_isnil(L, -1)) kcv_alg = payhsm_checkname(L, -1, "KCV algorithm", kcv_names);
    lua_pop(L, 1);
  }
  count = (int)lua_rawlen(L, 2);
  if (count < 2 || count > MAX_COMPONENTS)
    return payhsm_fail(L, fn, "KEY_COMPONENTS", "takes 2 to %d components, got %d", MAX_COMPONENTS, count);
  memset(acc, 0, sizeof acc);
  for (i = 1; i <= count; i++) {
    lua_rawgeti(L, 2, i);
    if (lua_type(L, -1) != LUA_TSTRING) {
      OPENSSL_cleanse(acc, sizeof acc);
      return payhsm_fail(L, fn, "KEY_COMPONENTS", "component %d is not a hex string", i);
    }
    n = payhsm_hexarg(L, -1, fn, "component", part, sizeof part);
    if (n == (size_t)-1) {
      OPENSSL_cleanse(acc, sizeof acc);
      return 3;
    }
    lua_pop(L, 1);
    if (n != want) {
      OPENSSL_cleanse(acc, sizeof acc);
      OPENSSL_cleanse(part, sizeof part);
      return payhsm_fail(L, fn, "KEY_LENGTH", "component %d: %s needs %d bytes, got %d", i,
                         payhsm_alg_name(alg), (int)want, (int)n);
    }
    if (!component_kcv(L, alg, part, n, kcv_alg, kcv[i - 1])) {
      OPENSSL_cleanse(acc, sizeof acc);
      OPENSSL_cleanse(part, sizeof part);
      return payhsm_raise_ossl(L, fn);
    }
    for (j = 0; j < n; j++) acc[j] ^= part[j];
  }
  OPENSSL_cleanse(part, sizeof part);
  if (payhsm_alg_family(alg) == PAYHSM_FAM_DES) payhsm_des_parity(acc, want);
  k = payhsm_pushkey(L, alg, acc, want);
  OPENSSL_cleanse(acc, sizeof acc);
  payhsm_key_setattrs(L, k, 3);
  if (!payhsm_kcv_compute(L, k, kcv_alg, kcv[MAX_COMPONENTS])) return payhsm_raise_ossl(L, fn);
  lua_createtable(L, 0, 2);
  payhsm_pushhex(L, kcv[MAX_COMPONENTS], 3);
  lua_setfield(L, -2, "kcv");
  lua_createtable(L, count, 0);
  for (i = 0; i < count; i++) {
    payhsm_pushhex(L, kcv[i], 3);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "component_kcvs");
  return 2;
}

/*
 * key.split(key, n) -> {component_hex, ...}
 * Splits a key into n clear components (2 to 9) whose XOR is the key, for test
 * ceremonies: n - 1 random components and the last one the XOR of the key with them.
 * DES-family components each have odd parity (only parity bits differ from the exact
 * XOR; key.from_components restores the key's parity). The components are the key's
 * clear bytes in another form, so this follows key:export(): it raises where clear
 * export is refused (hsm.policy).
 */
static int key_split(lua_State *L) {
  static const char *const fn = "key.split";
  payhsm_key *k = payhsm_checkkey(L, 1);
  lua_Integer count = luaL_checkinteger(L, 2);
  unsigned char clear[PAYHSM_MAX_KEY], part[PAYHSM_MAX_KEY];
  size_t n, j;
  int i, des = payhsm_alg_family(k->alg) == PAYHSM_FAM_DES;
  if (count < 2 || count > MAX_COMPONENTS)
    return luaL_argerror(L, 2, "a key splits into 2 to 9 components");
  /* The clear bytes through key:export(), so its policy decides. */
  lua_getfield(L, 1, "export");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  n = payhsm_hex_decode(lua_tostring(L, -1), lua_rawlen(L, -1), clear, sizeof clear);
  lua_pop(L, 1);
  if (n != k->len) return luaL_error(L, "%s: cannot read the key", fn);
  lua_createtable(L, (int)count, 0);
  for (i = 1; i < (int)count; i++) {
    if (RAND_priv_bytes(part, (int)n) != 1) {
      OPENSSL_cleanse(clear, sizeof clear);
      return payhsm_raise_ossl(L, fn);
    }
    if (des) payhsm_des_parity(part, n);
    for (j = 0; j < n; j++) clear[j] ^= part[j];
    payhsm_pushhex(L, part, n);
    lua_rawseti(L, -2, i);
  }
  if (des) payhsm_des_parity(clear, n);
  payhsm_pushhex(L, clear, n);
  lua_rawseti(L, -2, (int)count);
  OPENSSL_cleanse(clear, sizeof clear);
  OPENSSL_cleanse(part, sizeof part);
  return 1;
}

/* Adds from_components and split to the key table (opened by payhsm_key_open). */
void payhsm_components_open(lua_State *L) {
  lua_getfield(L, -1, "key");
  lua_pushcfunction(L, key_from_components);
  lua_setfield(L, -2, "from_components");
  lua_pushcfunction(L, key_split);
  lua_setfield(L, -2, "split");
  lua_pop(L, 1);
}
