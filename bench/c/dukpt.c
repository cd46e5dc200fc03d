/* dukpt.c - pure-C baselines for bench/dukpt.lua: the same KSN pools (same generator),
 * hex KSN in, the host derivation with the calls csrc/dukpt.c makes (TDES: DES key
 * schedules per step, ANSI X9.24-1 A.6; AES: one EVP context re-keyed per step, X9.24-3
 * 6.4; the BDK's initial-key encryption on its cached context), a new key object out. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <stdint.h>
#include <stdlib.h>
#include <openssl/des.h>
#include "bench.h"

static uint32_t tpool[4096], apool[4096];

static int ones(uint64_t x) { int n = 0; for (; x; x &= x - 1) n++; return n; }

static void fill(uint32_t *out, int bits, int maxones, uint64_t s) { /* as bench/dukpt.lua */
  int n = 0;
  while (n < 4096) {
    uint64_t c;
    s = (s * 1103515245u + 12345u) % 2147483648u;
    c = (s * 2 + (s % 7 == 0 ? 1 : 0)) % ((uint64_t)1 << bits);
    if (c > 0 && ones(c) <= maxones) out[n++] = (uint32_t)c;
  }
}

static void des1(const unsigned char *k, const unsigned char *in, unsigned char *out) {
  DES_key_schedule ks;
  DES_cblock kb, x, y;
  memcpy(kb, k, 8); memcpy(x, in, 8);
  DES_set_key_unchecked(&kb, &ks);
  DES_ecb_encrypt(&x, &y, &ks, DES_ENCRYPT);
  memcpy(out, y, 8);
  OPENSSL_cleanse(&ks, sizeof ks);
}

static void des2(const unsigned char *k, const unsigned char *in, unsigned char *out) {
  DES_key_schedule k1, k2;
  DES_cblock b1, b2, x, y;
  memcpy(b1, k, 8); memcpy(b2, k + 8, 8); memcpy(x, in, 8);
  DES_set_key_unchecked(&b1, &k1);
  DES_set_key_unchecked(&b2, &k2);
  DES_ecb3_encrypt(&x, &y, &k1, &k2, &k1, DES_ENCRYPT);
  memcpy(out, y, 8);
  OPENSSL_cleanse(&k1, sizeof k1); OPENSSL_cleanse(&k2, sizeof k2);
}

static const unsigned char c0[16] = {0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0, 0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0};

static void nrkgp(unsigned char *key, const unsigned char *r) {
  unsigned char m[16], r1[8], r2[8];
  int i;
  for (i = 0; i < 8; i++) r2[i] = (unsigned char)(r[i] ^ key[8 + i]);
  des1(key, r2, r2);
  for (i = 0; i < 8; i++) r2[i] ^= key[8 + i];
  for (i = 0; i < 16; i++) m[i] = (unsigned char)(key[i] ^ c0[i]);
  for (i = 0; i < 8; i++) r1[i] = (unsigned char)(r[i] ^ m[8 + i]);
  des1(m, r1, r1);
  for (i = 0; i < 8; i++) r1[i] ^= m[8 + i];
  memcpy(key, r1, 8); memcpy(key + 8, r2, 8);
}

static unsigned char *tdes_pin(const unsigned char *bdk, const char *ksnhex) {
  unsigned char ksn[10], base[8], k2[16], key[16], r8[8], *obj;
  uint32_t c, bit, acc = 0;
  int i;
  bench_unhex_fast(ksnhex, 20, ksn);
  c = ((uint32_t)(ksn[7] & 0x1F) << 16) | ((uint32_t)ksn[8] << 8) | ksn[9];
  memcpy(base, ksn, 8); base[7] &= 0xE0;
  for (i = 0; i < 16; i++) k2[i] = (unsigned char)(bdk[i] ^ c0[i]);
  des2(bdk, base, key); des2(k2, base, key + 8);
  for (bit = 1u << 20; bit; bit >>= 1) {
    if (!(c & bit)) continue;
    acc |= bit;
    memcpy(r8, ksn + 2, 8);
    r8[5] = (unsigned char)((r8[5] & 0xE0) | (acc >> 16)); r8[6] = (unsigned char)(acc >> 8); r8[7] = (unsigned char)acc;
    nrkgp(key, r8);
  }
  key[7] ^= 0xFF; key[15] ^= 0xFF;
  obj = malloc(16);
  memcpy(obj, key, 16);
  OPENSSL_cleanse(key, 16);
  return obj;
}

static EVP_CIPHER_CTX *bdk_ecb, *chain_ctx;

static void derive(const unsigned char *key, unsigned usage, const unsigned char *d8, unsigned char *out) {
  unsigned char dd[16] = {1, 1, 0, 0, 0, 2, 0, 0x80};
  int outl;
  dd[2] = (unsigned char)(usage >> 8); dd[3] = (unsigned char)usage;
  memcpy(dd + 8, d8, 8);
  EVP_EncryptInit_ex2(chain_ctx, NULL, key, NULL, NULL);
  EVP_EncryptUpdate(chain_ctx, out, &outl, dd, 16);
}

static unsigned char *aes_pin(const char *ksnhex) {
  unsigned char ksn[12], dd[16] = {1, 1, 0x80, 0x01, 0, 2, 0, 0x80}, key[16], d8[8], *obj;
  uint32_t c, bit, acc = 0;
  int outl;
  bench_unhex_fast(ksnhex, 24, ksn);
  c = ((uint32_t)ksn[8] << 24) | ((uint32_t)ksn[9] << 16) | ((uint32_t)ksn[10] << 8) | ksn[11];
  memcpy(dd + 8, ksn, 8);
  EVP_EncryptUpdate(bdk_ecb, key, &outl, dd, 16);
  memcpy(d8, ksn + 4, 4);
  for (bit = 0x80000000u; bit; bit >>= 1) {
    if (!(c & bit)) continue;
    acc |= bit;
    d8[4] = (unsigned char)(acc >> 24); d8[5] = (unsigned char)(acc >> 16); d8[6] = (unsigned char)(acc >> 8); d8[7] = (unsigned char)acc;
    derive(key, 0x8000, d8, key);
  }
  memcpy(d8 + 4, ksn + 8, 4);
  derive(key, 0x1000, d8, key);
  obj = malloc(16);
  memcpy(obj, key, 16);
  OPENSSL_cleanse(key, 16);
  return obj;
}

int main(void) {
  static char tk[4096][32], ak[4096][32];
  unsigned char tbdk[16], abdk[16];
  int i = 0, j;
  fill(tpool, 21, 10, 1);
  fill(apool, 32, 16, 2);
  for (j = 0; j < 4096; j++) {
    snprintf(tk[j], sizeof tk[j], "FFFF9876543210%02X%04X", 0xE0 + (tpool[j] >> 16), tpool[j] & 0xFFFF);
    snprintf(ak[j], sizeof ak[j], "1234567890123456%08X", apool[j]);
  }
  bench_unhex("0123456789ABCDEFFEDCBA9876543210", tbdk);
  bench_unhex("FEDCBA9876543210F1F1F1F1F1F1F1F1", abdk);
  bdk_ecb = ctx("AES-128-ECB", abdk);
  chain_ctx = ctx("AES-128-ECB", abdk);
  BENCH("dukpt_tdes_pin_key_random_ksn", 200000, {
    i = i % 4096;
    free(tdes_pin(tbdk, tk[i++]));
  });
  BENCH("dukpt_aes128_pin_key_random_ksn", 200000, {
    EVP_CIPHER_CTX *c;
    i = i % 4096;
    c = EVP_CIPHER_CTX_new(); /* csrc/dukpt.c makes one context per derivation */
    EVP_EncryptInit_ex2(c, EVP_aes_128_ecb(), NULL, NULL, NULL);
    EVP_CIPHER_CTX_set_padding(c, 0);
    EVP_CIPHER_CTX_free(chain_ctx);
    chain_ctx = c;
    free(aes_pin(ak[i++]));
  });
  return 0;
}
