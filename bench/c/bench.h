/* bench.h - timing helpers for the pure-C baselines. Each baseline makes the
 * same OpenSSL calls as the Lua API path (including hex in and out where the
 * API takes and returns hex) and prints "case_name ops_per_sec" lines. */
#ifndef PAYHSM_BENCH_H
#define PAYHSM_BENCH_H
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static inline double bench_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the body (the variadic part) n times, three times over after n/20 warm-up runs,
 * and prints name and ops/s of the best run (as bench/lib.lua does). */
#define BENCH(name, n, ...)                                   \
  do {                                                         \
    long bench_i_, bench_n_ = (n);                             \
    int bench_r_;                                              \
    double bench_t0_, bench_best_ = 1e30, bench_dt_;           \
    for (bench_i_ = 0; bench_i_ < bench_n_ / 20 + 1; bench_i_++) { __VA_ARGS__; } \
    for (bench_r_ = 0; bench_r_ < 3; bench_r_++) {             \
      bench_t0_ = bench_cpu();                                 \
      for (bench_i_ = 0; bench_i_ < bench_n_; bench_i_++) { __VA_ARGS__; } \
      bench_dt_ = bench_cpu() - bench_t0_;                     \
      if (bench_dt_ < bench_best_) bench_best_ = bench_dt_;    \
    }                                                          \
    printf("%s %.0f\n", name, (double)bench_n_ / bench_best_); \
  } while (0)

static inline void bench_hex(const unsigned char *in, size_t len, char *out) {
  static const char d[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < len; i++) { out[2 * i] = d[in[i] >> 4]; out[2 * i + 1] = d[in[i] & 15]; }
  out[2 * len] = 0;
}

static inline int bench_unhex(const char *hex, unsigned char *out) {
  size_t i, n = strlen(hex) / 2;
  for (i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
    out[i] = (unsigned char)v;
  }
  return (int)n;
}

/* Fast hex decode as the API does it (table lookup), for the timed loops. */
static inline size_t bench_unhex_fast(const char *hex, size_t len, unsigned char *out) {
  static signed char t[256];
  size_t i;
  if (!t['1']) {
    for (i = 0; i < 256; i++) t[i] = -1;
    for (i = 0; i < 10; i++) t['0' + i] = (signed char)i;
    for (i = 0; i < 6; i++) { t['A' + i] = (signed char)(10 + i); t['a' + i] = (signed char)(10 + i); }
  }
  for (i = 0; i < len / 2; i++)
    out[i] = (unsigned char)((t[(unsigned char)hex[2 * i]] << 4) | t[(unsigned char)hex[2 * i + 1]]);
  return len / 2;
}
/* ---- the call patterns payhsm.core uses (cached contexts, IV reset per call) ---- */

static inline EVP_CIPHER_CTX *ctx(const char *name, const unsigned char *key) {
  static const unsigned char iv[16];
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  EVP_CIPHER *ci = EVP_CIPHER_fetch(NULL, name, NULL);
  EVP_CipherInit_ex2(c, ci, key, iv, 1, NULL);
  EVP_CIPHER_CTX_set_padding(c, 0);
  return c;
}

/* CBC-chain len bytes from a zero IV; last block to out (as payhsm_cbc_chain). */
static inline void chain(EVP_CIPHER_CTX *c, const unsigned char *in, int len, int bs, unsigned char *out) {
  static const unsigned char iv[16];
  unsigned char buf[1024];
  int outl;
  EVP_CipherInit_ex2(c, NULL, NULL, iv, -1, NULL);
  EVP_CipherUpdate(c, buf, &outl, in, len);
  memcpy(out, buf + len - bs, (size_t)bs);
}

static inline void dbl(const unsigned char *in, unsigned char *out, int bs) {
  int i;
  unsigned char carry = (unsigned char)(in[0] >> 7);
  for (i = 0; i + 1 < bs; i++) out[i] = (unsigned char)((in[i] << 1) | (in[i + 1] >> 7));
  out[bs - 1] = (unsigned char)((in[bs - 1] << 1) ^ (carry * (bs == 16 ? 0x87 : 0x1B)));
}

/* Public random bytes from a RAND_bytes-filled 4 KiB pool, as payhsm_random does. */
static inline void bench_random(unsigned char *out, size_t n) {
  static unsigned char pool[4096];
  static size_t left;
  if (left < n) {
    RAND_bytes(pool, sizeof pool);
    left = sizeof pool;
  }
  memcpy(out, pool + sizeof pool - left, n);
  OPENSSL_cleanse(pool + sizeof pool - left, n);
  left -= n;
}

/* CMAC with the same call pattern as payhsm_key_cmac: up to 8 blocks block by block on
 * the ECB context, longer messages on the CBC context. */
static inline void cmac(EVP_CIPHER_CTX *ecb, EVP_CIPHER_CTX *cbc, const unsigned char *k1,
                        const unsigned char *k2, const unsigned char *m, int len, int bs,
                        unsigned char *out) {
  static const unsigned char iv[16];
  unsigned char last[16] = {0};
  int n = len == 0 ? 1 : (len + bs - 1) / bs, rem = len - (n - 1) * bs, i, b, outl;
  if (n <= 8) {
    for (b = 0; b + 1 < n; b++) {
      for (i = 0; i < bs; i++) last[i] ^= m[b * bs + i];
      EVP_CipherUpdate(ecb, last, &outl, last, bs);
    }
    for (i = 0; i < bs; i++) {
      unsigned char x = i < rem ? m[(n - 1) * bs + i] : (i == rem ? 0x80 : 0);
      last[i] ^= (unsigned char)(x ^ (rem == bs ? k1[i] : k2[i]));
    }
    EVP_CipherUpdate(ecb, out, &outl, last, bs);
    return;
  }
  chain(cbc, m, (n - 1) * bs, bs, last);
  EVP_CipherInit_ex2(cbc, NULL, NULL, last, -1, NULL);
  (void)iv;
  for (i = 0; i < bs; i++) {
    unsigned char x = i < rem ? m[(n - 1) * bs + i] : (i == rem ? 0x80 : 0);
    last[i] = (unsigned char)(x ^ (rem == bs ? k1[i] : k2[i]));
  }
  EVP_CipherUpdate(cbc, out, &outl, last, bs);
}

/* CBC as payhsm_key_crypt runs it: short runs on the ECB context (encrypt up to 128
 * bytes block by block; decrypt up to 4096 bytes in one ECB call plus xor), longer ones
 * on the CBC context with its IV reset. */
static inline void cbc_crypt(EVP_CIPHER_CTX *ecb, EVP_CIPHER_CTX *cbc, int enc, const unsigned char *iv,
                             const unsigned char *in, unsigned char *out, int len, int bs) {
  int outl, i, j;
  if (enc && len <= 128) {
    unsigned char x[16];
    const unsigned char *prev = iv;
    for (i = 0; i < len; i += bs) {
      for (j = 0; j < bs; j++) x[j] = (unsigned char)(in[i + j] ^ prev[j]);
      EVP_CipherUpdate(ecb, out + i, &outl, x, bs);
      prev = out + i;
    }
    return;
  }
  if (!enc && len <= 4096) {
    unsigned char ct[4096];
    memcpy(ct, in, (size_t)len);
    EVP_CipherUpdate(ecb, out, &outl, ct, len);
    for (j = 0; j < bs; j++) out[j] ^= iv[j];
    for (i = bs; i < len; i++) out[i] ^= ct[i - bs];
    return;
  }
  EVP_CipherInit_ex2(cbc, NULL, NULL, iv, -1, NULL);
  EVP_CipherUpdate(cbc, out, &outl, in, len);
}
#endif
