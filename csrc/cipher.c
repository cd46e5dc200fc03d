/*
 * cipher.c - TDES and AES (NIST SP 800-67, FIPS 197) in the modes of NIST SP 800-38A:
 * ECB and CBC on whole blocks, no padding, with the key's cached contexts; CFB (1-bit,
 * 8-bit and full-block segments) and OFB on any number of bytes.
 *
 * Lua: core.cipher.encrypt(key, mode, data_hex [, iv_hex]) -> hex | nil, msg, code
 *      core.cipher.decrypt(key, mode, data_hex [, iv_hex]) -> hex | nil, msg, code
 * mode is "ECB", "CBC", "CFB1", "CFB8", "CFB64" (TDES), "CFB128" (AES), "CFB" (the
 * full-block CFB of the key: CFB64 for TDES, CFB128 for AES) or "OFB". Every mode but ECB
 * takes an IV of one block, zero when absent. Key usage D0, D2 or D3 (or none); mode of
 * use E/B/N to encrypt, D/B/N to decrypt.
 * Codes: BAD_HEX, BAD_LENGTH (ECB/CBC data not a non-empty multiple of the block, other
 * modes empty data), IV_LENGTH, KEY_TYPE (an HMAC key, or a segment size the key's
 * cipher does not have: CFB64 with AES, CFB128 with TDES), KEY_USAGE.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "payhsm.h"

enum { M_ECB, M_CBC, M_CFB1, M_CFB8, M_CFB64, M_CFB128, M_CFB, M_OFB };

/* The OpenSSL cipher of a stream mode for the key; 2-key TDES runs as 3-key (K1 K2 K1),
 * so every segment size has a cipher. NULL when the key's family lacks the mode. */
static const char *stream_cipher(const payhsm_key *k, int mode) {
  static const char *const tdes[] = {"DES-EDE3-CFB1", "DES-EDE3-CFB8", "DES-EDE3-CFB", NULL, "DES-EDE3-CFB",
                                     "DES-EDE3-OFB"};
  static const char *const aes[3][6] = {
    {"AES-128-CFB1", "AES-128-CFB8", NULL, "AES-128-CFB", "AES-128-CFB", "AES-128-OFB"},
    {"AES-192-CFB1", "AES-192-CFB8", NULL, "AES-192-CFB", "AES-192-CFB", "AES-192-OFB"},
    {"AES-256-CFB1", "AES-256-CFB8", NULL, "AES-256-CFB", "AES-256-CFB", "AES-256-OFB"}};
  int i = mode - M_CFB1;
  if (payhsm_alg_family(k->alg) == PAYHSM_FAM_DES) return k->alg == PAYHSM_ALG_DES ? NULL : tdes[i];
  return aes[k->len == 16 ? 0 : k->len == 24 ? 1 : 2][i];
}

/* Runs a stream mode over n bytes in place. Never raises (the caller cleanses first). */
static int stream_run(const payhsm_key *k, const char *name, int enc, const unsigned char *iv, unsigned char *buf,
                      size_t n) {
  unsigned char key3[24];
  const unsigned char *key = k->bytes;
  EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
  EVP_CIPHER_CTX *ctx = c ? EVP_CIPHER_CTX_new() : NULL;
  int l1 = 0, l2 = 0, ok;
  if (k->alg == PAYHSM_ALG_TDES_2KEY) {
    memcpy(key3, k->bytes, 16);
    memcpy(key3 + 16, k->bytes, 8);
    key = key3;
  }
  ok = ctx && EVP_CipherInit_ex2(ctx, c, key, iv, enc, NULL) == 1 &&
       EVP_CipherUpdate(ctx, buf, &l1, buf, (int)n) == 1 && EVP_CipherFinal_ex(ctx, buf + l1, &l2) == 1 &&
       (size_t)(l1 + l2) == n;
  OPENSSL_cleanse(key3, sizeof key3);
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(c);
  return ok;
}

static int crypt(lua_State *L, int enc) {
  static const char *const modes[] = {"ECB", "CBC", "CFB1", "CFB8", "CFB64", "CFB128", "CFB", "OFB", NULL};
  const char *fn = enc ? "cipher.encrypt" : "cipher.decrypt";
  payhsm_key *k = payhsm_checkkey(L, 1);
  int mode = payhsm_checkname(L, 2, "cipher mode", modes);
  unsigned char iv[16] = {0}, *buf, stackbuf[512];
  size_t bs = payhsm_key_blocksize(k), n, ivlen;
  const char *stream = NULL;
  int r, ok;
  if (mode == M_ECB && !lua_isnoneornil(L, 4)) return luaL_argerror(L, 4, "ECB takes no IV");
  if ((r = payhsm_key_usage(L, k, fn, "D0 D2 D3", enc ? "EBN" : "DBN"))) return r;
  if (!bs) return payhsm_fail(L, fn, "KEY_TYPE", "%s keys cannot encipher", payhsm_alg_name(k->alg));
  if (mode >= M_CFB1 && !(stream = stream_cipher(k, mode)))
    return payhsm_fail(L, fn, "KEY_TYPE", "%s keys have no %s mode", payhsm_alg_name(k->alg), modes[mode]);
  if (mode != M_ECB && !lua_isnoneornil(L, 4)) {
    ivlen = payhsm_hexarg(L, 4, fn, "IV", iv, sizeof iv);
    if (ivlen == (size_t)-1) return 3;
    if (ivlen != bs)
      return payhsm_fail(L, fn, "IV_LENGTH", "IV must be %d bytes, got %d", (int)bs, (int)ivlen);
  }
  n = payhsm_hexarg_scratch(L, 3, fn, "data", 0, stackbuf, sizeof stackbuf, &buf);
  if (n == (size_t)-1) return 3;
  if (stream ? n == 0 : (n == 0 || n % bs != 0))
    return stream ? payhsm_fail(L, fn, "BAD_LENGTH", "data must not be empty")
                  : payhsm_fail(L, fn, "BAD_LENGTH", "data must be a non-empty multiple of %d bytes, got %d",
                                (int)bs, (int)n);
  ok = stream ? stream_run(k, stream, enc, iv, buf, n)
              : payhsm_key_crypt(L, k, enc, mode == M_CBC ? iv : NULL, buf, buf, n);
  if (!ok) {
    OPENSSL_cleanse(buf, n);
    return payhsm_raise_ossl(L, fn);
  }
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
