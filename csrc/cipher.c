/*
 * cipher.c - TDES and AES in ECB and CBC (NIST SP 800-67, FIPS 197, SP 800-38A)
 * on whole blocks, no padding, with the key's cached contexts.
 *
 * Lua: core.cipher.encrypt(key, mode, data_hex [, iv_hex]) -> hex | nil, msg, code
 *      core.cipher.decrypt(key, mode, data_hex [, iv_hex]) -> hex | nil, msg, code
 * mode is "ECB" or "CBC"; CBC without an IV uses a zero IV. Key usage D0, D2 or D3
 * (or none); mode of use E/B/N to encrypt, D/B/N to decrypt.
 * Codes: BAD_HEX, BAD_LENGTH (data not a non-empty multiple of the block),
 * IV_LENGTH, KEY_TYPE (an HMAC key), KEY_USAGE.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

static int crypt(lua_State *L, int enc) {
  static const char *const modes[] = {"ECB", "CBC", NULL};
  const char *fn = enc ? "cipher.encrypt" : "cipher.decrypt";
  payhsm_key *k = payhsm_checkkey(L, 1);
  int cbc = payhsm_checkname(L, 2, "cipher mode", modes);
  unsigned char iv[16] = {0}, *buf, stackbuf[512];
  size_t bs = payhsm_key_blocksize(k), n, ivlen;
  int r;
  if (!cbc && !lua_isnoneornil(L, 4)) return luaL_argerror(L, 4, "ECB takes no IV");
  if ((r = payhsm_key_usage(L, k, fn, "D0 D2 D3", enc ? "EBN" : "DBN"))) return r;
  if (!bs) return payhsm_fail(L, fn, "KEY_TYPE", "%s keys cannot encipher", payhsm_alg_name(k->alg));
  if (cbc && !lua_isnoneornil(L, 4)) {
    ivlen = payhsm_hexarg(L, 4, fn, "IV", iv, sizeof iv);
    if (ivlen == (size_t)-1) return 3;
    if (ivlen != bs)
      return payhsm_fail(L, fn, "IV_LENGTH", "IV must be %d bytes, got %d", (int)bs, (int)ivlen);
  }
  n = payhsm_hexarg_scratch(L, 3, fn, "data", 0, stackbuf, sizeof stackbuf, &buf);
  if (n == (size_t)-1) return 3;
  if (n == 0 || n % bs != 0)
    return payhsm_fail(L, fn, "BAD_LENGTH", "data must be a non-empty multiple of %d bytes, got %d",
                       (int)bs, (int)n);
  if (!payhsm_key_crypt(L, k, enc, cbc ? iv : NULL, buf, buf, n)) return payhsm_raise_ossl(L, fn);
  payhsm_pushhex(L, buf, n);
  OPENSSL_cleanse(buf, n);
  return 1;
}

static int cipher_encrypt(lua_State *L) { return crypt(L, 1); }
static int cipher_decrypt(lua_State *L) { return crypt(L, 0); }

void payhsm_cipher_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"encrypt", cipher_encrypt}, {"decrypt", cipher_decrypt}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "cipher");
}
