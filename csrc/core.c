/*
 * core.c - luaopen_payhsm_core, the entry point: it opens every area into one
 * table. The helpers the areas share are in util.c.
 */
#include <openssl/crypto.h>

#include "payhsm.h"

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
 * (key, cipher, mac, kcv, tr31, pin, card, dukpt, emv, as2805, zka, envelope,
 * rotation, rsa, tr34, file, signal, sigv4, pki) and the functions kcv, policy, hmac,
 * hmac_verify, random and equal; the friendly API in lua/payhsm/init.lua re-exports them.
 * Areas that add to another's table open after it (components after key, pinverify
 * after pinblock, emvsm after emv).
 */
int luaopen_payhsm_core(lua_State *L);
int luaopen_payhsm_core(lua_State *L) {
  if (!payhsm_algorithms_load()) return payhsm_raise_ossl(L, "payhsm.core");
  lua_newtable(L);
  payhsm_kcv_open(L);
  payhsm_key_open(L);
  payhsm_components_open(L);
  payhsm_cipher_open(L);
  payhsm_mac_open(L);
  payhsm_tr31_open(L);
  payhsm_pinblock_open(L);
  payhsm_pinverify_open(L);
  payhsm_emv_open(L);
  payhsm_emvsm_open(L);
  payhsm_as2805_open(L);
  payhsm_zka_open(L);
  payhsm_envelope_open(L);
  payhsm_hmac_open(L);
  payhsm_rotation_open(L);
  payhsm_rsa_open(L);
  payhsm_card_open(L);
  payhsm_dukpt_open(L);
  payhsm_tr34_open(L);
  payhsm_file_open(L);
  payhsm_signal_open(L);
  payhsm_sigv4_open(L);
  payhsm_pki_open(L);
  payhsm_ec_open(L);
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
