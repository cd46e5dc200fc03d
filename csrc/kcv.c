/*
 * kcv.c - key check values.
 *
 *  ANSI_X9_24  encrypt an all-zero block (8 bytes TDES, 16 bytes AES) with the key
 *              and keep the leftmost 3 bytes (ANSI X9.24-1:2017 Annex A, first
 *              method; PCI PIN requirement 15-1).
 *  CMAC        CMAC (NIST SP 800-38B) of an all-zero block with the key's own
 *              cipher, leftmost 3 bytes (X9.24-1 second method; the KCV AWS
 *              Payment Cryptography reports for AES keys).
 *  HMAC        payhsm's method for HMAC keys, which no payment standard defines:
 *              HMAC with the key's own digest over 16 zero bytes, leftmost 3 bytes.
 *
 * Lua: core.kcv(key [, kcv_algorithm]) -> hex (same as key:kcv()).
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

static const unsigned char zero_block[16];

int payhsm_kcv_compute(lua_State *L, payhsm_key *k, int kcv_alg, unsigned char out[3]) {
  unsigned char buf[64];
  size_t bs = payhsm_key_blocksize(k), outlen = 0;
  int ok;
  switch (kcv_alg) {
    case 0:
      if (!bs) luaL_error(L, "ANSI_X9_24 check values need a TDES or AES key (use HMAC)");
      ok = payhsm_key_crypt(L, k, 1, NULL, zero_block, buf, bs);
      break;
    case 1:
      if (!bs) luaL_error(L, "CMAC check values need a TDES or AES key (use HMAC)");
      ok = payhsm_key_cmac(L, k, zero_block, bs, buf);
      break;
    default:
      if (bs) luaL_error(L, "HMAC check values need an HMAC key");
      ok = payhsm_key_hmac(L, k, zero_block, sizeof zero_block, buf, &outlen);
      break;
  }
  if (ok) memcpy(out, buf, 3);
  OPENSSL_cleanse(buf, sizeof buf);
  return ok;
}

/* core.kcv(key [, kcv_algorithm]) -> hex; also the key:kcv() method (key.c). */
int payhsm_kcv(lua_State *L) {
  static const char *const names[] = {"ANSI_X9_24", "CMAC", "HMAC", NULL};
  payhsm_key *k = payhsm_checkkey(L, 1);
  unsigned char out[3];
  int which = lua_isnoneornil(L, 2) ? (payhsm_key_blocksize(k) ? 0 : 2)
                                    : payhsm_checkname(L, 2, "KCV algorithm", names);
  if (!payhsm_kcv_compute(L, k, which, out)) return payhsm_raise_ossl(L, "kcv");
  payhsm_pushhex(L, out, 3);
  return 1;
}

void payhsm_kcv_open(lua_State *L) {
  lua_pushcfunction(L, payhsm_kcv);
  lua_setfield(L, -2, "kcv");
}
