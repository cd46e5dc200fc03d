/*
 * block.c - the block primitives every area builds on, run on the contexts each
 * key object builds once and reuses: ECB/CBC encipherment with a fast path for
 * short CBC runs, the CBC chain of CBC-MACs, CMAC (NIST SP 800-38B), HMAC (FIPS
 * 198-1) and the counter-mode KBKDF of NIST SP 800-108r1.
 */
#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <pthread.h>

#include "payhsm.h"

/* Expands a DES-family key to the 24 bytes DES-EDE3 takes. */
static void des_expand(const payhsm_key *k, unsigned char out[24]) {
  if (k->len == 8) {
    memcpy(out, k->bytes, 8); memcpy(out + 8, k->bytes, 8); memcpy(out + 16, k->bytes, 8);
  } else if (k->len == 16) {
    memcpy(out, k->bytes, 16); memcpy(out + 16, k->bytes, 8);
  } else {
    memcpy(out, k->bytes, 24);
  }
}

static EVP_CIPHER_CTX *make_ctx(lua_State *L, const EVP_CIPHER *c, const unsigned char *key,
                                int enc) {
  static const unsigned char zero_iv[16] = {0};
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx || !EVP_CipherInit_ex2(ctx, c, key, zero_iv, enc, NULL) ||
      !EVP_CIPHER_CTX_set_padding(ctx, 0)) {
    EVP_CIPHER_CTX_free(ctx);
    payhsm_raise_ossl(L, "key");
    return NULL;
  }
  return ctx;
}

static EVP_CIPHER_CTX *build(lua_State *L, payhsm_key *k, int cbc, int enc) {
  unsigned char tmp[24];
  EVP_CIPHER_CTX *ctx;
  const EVP_CIPHER *c = payhsm_cipher_for(k->alg, cbc);
  if (!c) luaL_error(L, "%s keys are not block cipher keys", payhsm_alg_name(k->alg));
  if (payhsm_alg_family(k->alg) == PAYHSM_FAM_DES) {
    des_expand(k, tmp);
    ctx = make_ctx(L, c, tmp, enc);
    OPENSSL_cleanse(tmp, sizeof tmp);
  } else {
    ctx = make_ctx(L, c, k->bytes, enc);
  }
  return ctx;
}

EVP_CIPHER_CTX *payhsm_key_ecb(lua_State *L, payhsm_key *k, int enc) {
  EVP_CIPHER_CTX **slot = enc ? &k->ecb_enc : &k->ecb_dec;
  if (!*slot) *slot = build(L, k, 0, enc);
  return *slot;
}

EVP_CIPHER_CTX *payhsm_key_cbc(lua_State *L, payhsm_key *k, int enc) {
  EVP_CIPHER_CTX **slot = enc ? &k->cbc_enc : &k->cbc_dec;
  if (!*slot) *slot = build(L, k, 1, enc);
  return *slot;
}

EVP_CIPHER_CTX *payhsm_key_k1cbc(lua_State *L, payhsm_key *k) {
  if (!k->des_k1) {
    unsigned char tmp[24];
    if (payhsm_alg_family(k->alg) != PAYHSM_FAM_DES) luaL_error(L, "not a DES-family key");
    memcpy(tmp, k->bytes, 8); memcpy(tmp + 8, k->bytes, 8); memcpy(tmp + 16, k->bytes, 8);
    k->des_k1 = make_ctx(L, payhsm_cipher_for(PAYHSM_ALG_DES, 1), tmp, 1);
    OPENSSL_cleanse(tmp, sizeof tmp);
  }
  return k->des_k1;
}

/* Short CBC runs on the key's ECB context: resetting a CBC context's IV with
 * EVP_CipherInit_ex2 costs more in OpenSSL 3 than several block calls. */
#define SHORT_CBC_ENC 128  /* bytes: chained block by block on the ECB context */
#define SHORT_CBC_DEC 4096 /* bytes: one ECB call, then the xor with the previous block */

int payhsm_key_crypt(lua_State *L, payhsm_key *k, int enc, const unsigned char *iv,
                     const unsigned char *in, unsigned char *out, size_t len) {
  EVP_CIPHER_CTX *ctx;
  int outl;
  size_t bs = payhsm_key_blocksize(k), i, j;
  if (len == 0) return 1;
  if (len > (size_t)0x7fffffff) return 0;
  if (iv && enc && len <= SHORT_CBC_ENC) {
    unsigned char x[16];
    const unsigned char *prev = iv;
    ctx = payhsm_key_ecb(L, k, 1);
    for (i = 0; i < len; i += bs) {
      for (j = 0; j < bs; j++) x[j] = (unsigned char)(in[i + j] ^ prev[j]);
      if (!EVP_CipherUpdate(ctx, out + i, &outl, x, (int)bs)) return 0;
      prev = out + i;
    }
    OPENSSL_cleanse(x, sizeof x);
    return 1;
  }
  if (iv && !enc && len <= SHORT_CBC_DEC) {
    unsigned char ct[SHORT_CBC_DEC];
    memcpy(ct, in, len);
    ctx = payhsm_key_ecb(L, k, 0);
    if (!EVP_CipherUpdate(ctx, out, &outl, ct, (int)len) || (size_t)outl != len) return 0;
    for (j = 0; j < bs; j++) out[j] ^= iv[j];
    for (i = bs; i < len; i++) out[i] ^= ct[i - bs];
    return 1;
  }
  if (iv) {
    ctx = payhsm_key_cbc(L, k, enc);
    if (!EVP_CipherInit_ex2(ctx, NULL, NULL, iv, -1, NULL)) return 0;
  } else {
    ctx = payhsm_key_ecb(L, k, enc);
  }
  return EVP_CipherUpdate(ctx, out, &outl, in, (int)len) && (size_t)outl == len;
}

int payhsm_cbc_chain(EVP_CIPHER_CTX *ctx, const unsigned char *in, size_t len, size_t bs,
                     unsigned char *last) {
  static const unsigned char zero_iv[16] = {0};
  unsigned char buf[1024];
  int outl;
  if (!EVP_CipherInit_ex2(ctx, NULL, NULL, zero_iv, -1, NULL)) return 0;
  while (len > 0) {
    size_t n = len > sizeof buf ? sizeof buf : len;
    if (!EVP_CipherUpdate(ctx, buf, &outl, in, (int)n) || (size_t)outl != n) return 0;
    in += n;
    len -= n;
    if (len == 0) memcpy(last, buf + n - bs, bs);
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return 1;
}

/* The HMAC algorithm object, fetched once per process. */
static EVP_MAC *hmac_alg;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void) { hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL); }

int payhsm_key_hmac(lua_State *L, payhsm_key *k, const unsigned char *msg, size_t len,
                    unsigned char *out, size_t *outlen) {
  if (payhsm_alg_family(k->alg) != PAYHSM_FAM_HMAC) luaL_error(L, "HMAC needs an HMAC key");
  if (!k->hmac) {
    OSSL_PARAM params[2];
    pthread_once(&hmac_once, hmac_fetch);
    if (!hmac_alg) return 0;
    params[0] = OSSL_PARAM_construct_utf8_string(
        "digest", (char *)(uintptr_t)EVP_MD_get0_name(payhsm_md_for(k->alg)), 0);
    params[1] = OSSL_PARAM_construct_end();
    k->hmac = EVP_MAC_CTX_new(hmac_alg);
    if (!k->hmac || !EVP_MAC_init(k->hmac, k->bytes, k->len, params)) {
      EVP_MAC_CTX_free(k->hmac);
      k->hmac = NULL;
      return 0;
    }
  } else if (!EVP_MAC_init(k->hmac, NULL, 0, NULL)) {
    return 0;
  }
  return EVP_MAC_update(k->hmac, msg, len) && EVP_MAC_final(k->hmac, out, outlen, 64);
}

/* CMAC subkey generation, NIST SP 800-38B section 6.1. */
static void dbl(const unsigned char *in, unsigned char *out, size_t bs) {
  size_t i;
  unsigned char carry = (unsigned char)(in[0] >> 7);
  for (i = 0; i + 1 < bs; i++) out[i] = (unsigned char)((in[i] << 1) | (in[i + 1] >> 7));
  out[bs - 1] = (unsigned char)(in[bs - 1] << 1);
  out[bs - 1] ^= (unsigned char)(carry * (bs == 16 ? 0x87 : 0x1B));
}

int payhsm_key_cmac(lua_State *L, payhsm_key *k, const unsigned char *msg, size_t len,
                    unsigned char *out) {
  size_t bs = payhsm_key_blocksize(k), n, rem, i;
  unsigned char last[16];
  int outl;
  EVP_CIPHER_CTX *cbc;
  if (!bs) luaL_error(L, "CMAC needs a block cipher key");
  cbc = payhsm_key_cbc(L, k, 1);
  if (!k->cmac_ready) {
    static const unsigned char zero[16] = {0};
    unsigned char l[16];
    if (!payhsm_key_crypt(L, k, 1, NULL, zero, l, bs)) return 0;
    dbl(l, k->cmac_k1, bs);
    dbl(k->cmac_k1, k->cmac_k2, bs);
    OPENSSL_cleanse(l, sizeof l);
    k->cmac_ready = 1;
  }
  /* M_1 .. M_{n-1} are CBC-chained; M_n is completed with K1 or K2. */
  n = len == 0 ? 1 : (len + bs - 1) / bs;
  rem = len - (n - 1) * bs;
  if (n <= 8) { /* short messages: block by block on the ECB context (no IV reset) */
    unsigned char c[16] = {0};
    EVP_CIPHER_CTX *ecb = payhsm_key_ecb(L, k, 1);
    size_t b, j;
    for (b = 0; b + 1 < n; b++) {
      for (j = 0; j < bs; j++) c[j] ^= msg[b * bs + j];
      if (!EVP_CipherUpdate(ecb, c, &outl, c, (int)bs)) return 0;
    }
    for (j = 0; j < bs; j++) {
      unsigned char m = rem == bs ? (unsigned char)(msg[(n - 1) * bs + j] ^ k->cmac_k1[j])
                        : (unsigned char)((j < rem ? msg[(n - 1) * bs + j] : (j == rem ? 0x80 : 0)) ^ k->cmac_k2[j]);
      c[j] ^= m;
    }
    if (!EVP_CipherUpdate(ecb, out, &outl, c, (int)bs)) return 0;
    OPENSSL_cleanse(c, sizeof c);
    return 1;
  }
  if (n > 1) {
    if (!payhsm_cbc_chain(cbc, msg, (n - 1) * bs, bs, last)) return 0;
    /* Continue the chain: the context's IV is now the last ciphertext block. */
    if (!EVP_CipherInit_ex2(cbc, NULL, NULL, last, -1, NULL)) return 0;
  } else {
    static const unsigned char zero_iv[16] = {0};
    if (!EVP_CipherInit_ex2(cbc, NULL, NULL, zero_iv, -1, NULL)) return 0;
  }
  if (rem == bs) {
    for (i = 0; i < bs; i++) last[i] = (unsigned char)(msg[(n - 1) * bs + i] ^ k->cmac_k1[i]);
  } else {
    for (i = 0; i < bs; i++) {
      unsigned char b = i < rem ? msg[(n - 1) * bs + i] : (i == rem ? 0x80 : 0);
      last[i] = (unsigned char)(b ^ k->cmac_k2[i]);
    }
  }
  if (!EVP_CipherUpdate(cbc, out, &outl, last, (int)bs)) return 0;
  OPENSSL_cleanse(last, sizeof last);
  return 1;
}

/* NIST SP 800-108r1 KBKDF in counter mode (section 4.1), OpenSSL's KBKDF: the PRF
 * is AES-CMAC for an AES key-derivation key, HMAC for an HMAC one (0 otherwise). */
int payhsm_kbkdf(const payhsm_key *kdk, const unsigned char *label, size_t llen,
                 const unsigned char *context, size_t clen, unsigned char *out, size_t n) {
  OSSL_PARAM params[7], *p = params;
  EVP_KDF *kdf;
  EVP_KDF_CTX *ctx;
  int ok;
  *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, (char *)(uintptr_t)"counter", 0);
  if (payhsm_alg_family(kdk->alg) == PAYHSM_FAM_AES) {
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, (char *)(uintptr_t)"CMAC", 0);
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_CIPHER,
        (char *)(uintptr_t)EVP_CIPHER_get0_name(payhsm_cipher_for(kdk->alg, 1)), 0);
  } else if (payhsm_alg_family(kdk->alg) == PAYHSM_FAM_HMAC) {
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, (char *)(uintptr_t)"HMAC", 0);
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
        (char *)(uintptr_t)EVP_MD_get0_name(payhsm_md_for(kdk->alg)), 0);
  } else {
    return 0;
  }
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, kdk->bytes, kdk->len);
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)label, llen);
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)context, clen);
  *p = OSSL_PARAM_construct_end();
  kdf = EVP_KDF_fetch(NULL, "KBKDF", NULL);
  ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  EVP_KDF_free(kdf);
  ok = ctx && EVP_KDF_derive(ctx, out, n, params) == 1;
  EVP_KDF_CTX_free(ctx);
  return ok;
}
