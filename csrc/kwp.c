/*
 * kwp.c - AES key wrap with padding (RFC 5649) and private keys under it: how an
 * asymmetric private key (RSA, elliptic curve) is kept, as the PKCS#8 PrivateKeyInfo
 * DER (RFC 5208) wrapped under an AES KEK, and only ever unwrapped into an opaque key
 * object inside C.
 *
 * C: payhsm_pkcs8_wrap / payhsm_pkcs8_unwrap (for rsa.c's and ec.c's key:wrap and
 *    unwrap), payhsm_kwp_wrap / payhsm_kwp_verify (the Lua functions core.rsa.kwp_wrap
 *    and core.rsa.kwp_verify: the RFC 5649 primitive, for known answers).
 * The KEK: an AES key, usage K0/K1 or none.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "payhsm.h"

#define KWP_BAD ((size_t)-1)
#define KWP_OSSL ((size_t)-2)

/* Runs KWP over in (n bytes) into out (capacity n + 16). Returns the output length,
 * KWP_BAD when unwrapping fails the integrity check (out is cleansed), or KWP_OSSL on an
 * OpenSSL failure. Never raises, so every caller can cleanse clear bytes before it raises. */
static size_t kwp_run(payhsm_key *kek, int enc, const unsigned char *in, size_t n, unsigned char *out) {
  const EVP_CIPHER *c = kek->alg == PAYHSM_ALG_AES_128   ? EVP_aes_128_wrap_pad()
                        : kek->alg == PAYHSM_ALG_AES_192 ? EVP_aes_192_wrap_pad()
                                                         : EVP_aes_256_wrap_pad();
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int l1 = 0, l2 = 0, ok;
  if (!ctx) return KWP_OSSL;
  EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (EVP_CipherInit_ex(ctx, c, NULL, kek->bytes, NULL, enc) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return KWP_OSSL;
  }
  ok = EVP_CipherUpdate(ctx, out, &l1, in, (int)n) == 1 && EVP_CipherFinal_ex(ctx, out + l1, &l2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    OPENSSL_cleanse(out, n + 16);
    if (enc) return KWP_OSSL;
    ERR_clear_error();
    return KWP_BAD;
  }
  return (size_t)l1 + (size_t)l2;
}

/* The KEK of every KWP function: an AES key (else raises), usage K0/K1 or none. */
static int kek_check(lua_State *L, payhsm_key *kek, const char *fn, int enc) {
  if (payhsm_alg_family(kek->alg) != PAYHSM_FAM_AES)
    return luaL_error(L, "%s: the KEK must be an AES key, got %s", fn, payhsm_alg_name(kek->alg));
  return payhsm_key_usage(L, kek, fn, "K0 K1", enc ? "EBN" : "DBN");
}

/* payhsm_pkcs8_wrap: pushes the hex of KWP(kek, PKCS#8 PrivateKeyInfo DER of pkey)
 * RFC 5208 inside RFC 5649 section 4.1. Every Lua allocation (which may raise) happens before the clear DER exists: its length
 * is measured on a first encoding that is freed (and cleansed by OpenSSL) at once, the
 * DER is then written into a scratch that is cleansed before anything can raise. */
int payhsm_pkcs8_wrap(lua_State *L, EVP_PKEY *pkey, payhsm_key *kek, const char *fn) {
  PKCS8_PRIV_KEY_INFO *p8;
  unsigned char *der, *out, *p;
  int len, len2, r;
  size_t m;
  if ((r = kek_check(L, kek, fn, 1))) return r;
  if (!(p8 = EVP_PKEY2PKCS8(pkey))) return payhsm_raise_ossl(L, fn);
  len = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL); /* measures only: no clear bytes written */
  PKCS8_PRIV_KEY_INFO_free(p8);
  if (len <= 0) return payhsm_raise_ossl(L, fn);
  der = lua_newuserdatauv(L, (size_t)len, 0);
  out = lua_newuserdatauv(L, (size_t)len + 16, 0);
  if (!(p8 = EVP_PKEY2PKCS8(pkey))) return payhsm_raise_ossl(L, fn);
  p = der;
  len2 = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL) == len ? i2d_PKCS8_PRIV_KEY_INFO(p8, &p) : -1;
  PKCS8_PRIV_KEY_INFO_free(p8);
  m = len2 == len ? kwp_run(kek, 1, der, (size_t)len, out) : KWP_OSSL;
  OPENSSL_cleanse(der, (size_t)len);
  if (m == KWP_OSSL || m == KWP_BAD) return payhsm_raise_ossl(L, fn);
  payhsm_pushhex(L, out, m);
  return 1;
}

/* payhsm_pkcs8_unwrap: KWP-unwraps (RFC 5649 4.2) the hex at hex_idx under the kek at
 * kek_idx into a PKCS#8 private key of base_id (EVP_PKEY_RSA, EVP_PKEY_EC), stored in the
 * slot that shell() pushes (a fresh key userdata, made before the clear DER exists).
 * The clear DER exists only in a scratch cleansed on every path. Returns 1 with the
 * key on top, or 3 (nil, msg, code: code for a failed integrity check, not PKCS#8 or not
 * of base_id; BAD_HEX; KEY_USAGE). */
int payhsm_pkcs8_unwrap(lua_State *L, int kek_idx, int hex_idx, const char *fn, const char *code, int base_id,
                        const char *kind, EVP_PKEY **(*shell)(lua_State *L)) {
  payhsm_key *kek = payhsm_checkkey(L, kek_idx);
  unsigned char *in, *der;
  const unsigned char *p;
  size_t n, m;
  int r;
  PKCS8_PRIV_KEY_INFO *p8;
  EVP_PKEY *pkey, **slot;
  if ((r = kek_check(L, kek, fn, 0))) return r;
  n = payhsm_hexarg_alloc(L, hex_idx, fn, "wrapped key", 0, &in);
  if (n == (size_t)-1) return 3;
  if (n < 16 || n % 8) return payhsm_fail(L, fn, code, "wrapped key must be a multiple of 8 bytes, at least 16");
  der = lua_newuserdatauv(L, n + 16, 0);
  slot = shell(L);
  m = kwp_run(kek, 0, in, n, der);
  if (m == KWP_OSSL) return payhsm_raise_ossl(L, fn);
  if (m == KWP_BAD) return payhsm_fail(L, fn, code, "key wrap integrity check failed: wrong KEK or altered data");
  p = der;
  p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)m);
  pkey = p8 ? EVP_PKCS82PKEY(p8) : NULL;
  PKCS8_PRIV_KEY_INFO_free(p8); /* OpenSSL cleanses the private key octets it held */
  OPENSSL_cleanse(der, n + 16);
  if (!pkey) return payhsm_fail(L, fn, code, "unwrapped data is not a PKCS#8 private key");
  if (EVP_PKEY_get_base_id(pkey) != base_id) {
    EVP_PKEY_free(pkey);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: unwrapped key is not an %s key", fn, kind);
    lua_pushstring(L, code);
    return 3;
  }
  *slot = pkey;
  return 1;
}

/* core.rsa.kwp_wrap(kek, hex) -> hex | nil, msg, code (RFC 5649 section 4.1)
 * The KWP primitive, for known answers and for bringing an outside PKCS#8 key in (then
 * core.rsa.unwrap). The clear input is cleansed on every path. Codes BAD_HEX,
 * BAD_LENGTH (empty), KEY_USAGE. */
int payhsm_kwp_wrap(lua_State *L) {
  static const char fn[] = "rsa.kwp_wrap";
  payhsm_key *kek = payhsm_checkkey(L, 1);
  unsigned char *in, *out;
  size_t n, m;
  int r;
  if ((r = kek_check(L, kek, fn, 1))) return r;
  n = payhsm_hexarg_alloc(L, 2, fn, "data", 0, &in);
  if (n == (size_t)-1) return 3;
  if (n == 0) return payhsm_fail(L, fn, "BAD_LENGTH", "nothing to wrap");
  out = lua_newuserdatauv(L, n + 16, 0);
  m = kwp_run(kek, 1, in, n, out);
  OPENSSL_cleanse(in, n);
  if (m == KWP_OSSL || m == KWP_BAD) return payhsm_raise_ossl(L, fn);
  payhsm_pushhex(L, out, m);
  return 1;
}

/* core.rsa.kwp_verify(kek, wrapped_hex, plain_hex) -> true | false, msg, code
 * Unwraps (RFC 5649 section 4.2) inside C and compares the result with plain_hex in
 * constant time; the unwrapped bytes never reach Lua (no function returns them: a
 * wrapped private key only ever becomes an RsaKey, through core.rsa.unwrap). For the
 * RFC 5649 known answers. Codes KWP_UNWRAP (integrity check: wrong KEK or altered
 * data), KWP_MISMATCH (unwraps, to other data), BAD_LENGTH, BAD_HEX, KEY_USAGE. */
int payhsm_kwp_verify(lua_State *L) {
  static const char fn[] = "rsa.kwp_verify";
  payhsm_key *kek = payhsm_checkkey(L, 1);
  unsigned char *in, *want, *out;
  size_t n, wn, m;
  int r, same;
  luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  if ((r = kek_check(L, kek, fn, 0))) { lua_pushboolean(L, 0); lua_replace(L, -4); return r; }
  n = payhsm_hexarg_alloc(L, 2, fn, "wrapped data", 0, &in);
  if (n == (size_t)-1) { lua_pushboolean(L, 0); lua_replace(L, -4); return 3; }
  if (n < 16 || n % 8) return payhsm_false(L, fn, "BAD_LENGTH", "wrapped data must be a multiple of 8 bytes, at least 16");
  wn = payhsm_hexarg_alloc(L, 3, fn, "plaintext", 0, &want);
  if (wn == (size_t)-1) { lua_pushboolean(L, 0); lua_replace(L, -4); return 3; }
  out = lua_newuserdatauv(L, n + 16, 0);
  m = kwp_run(kek, 0, in, n, out);
  same = m != KWP_BAD && m != KWP_OSSL && m == wn && CRYPTO_memcmp(out, want, wn) == 0;
  OPENSSL_cleanse(out, n + 16);
  OPENSSL_cleanse(want, wn);
  if (m == KWP_OSSL) return payhsm_raise_ossl(L, fn);
  if (m == KWP_BAD) return payhsm_false(L, fn, "KWP_UNWRAP", "integrity check failed: wrong KEK or altered data");
  if (!same) return payhsm_false(L, fn, "KWP_MISMATCH", "unwrapped data differs from the expected plaintext");
  lua_pushboolean(L, 1);
  return 1;
}
