/* emv.c - pure-C baselines for bench/emv.lua: the calls payhsm.core makes for an ARQC
 * (IMK EVP context cached; the per-card ICC master key and per-transaction session key
 * on DES key schedules set per call; single-DES CBC under K1 for the retail MAC). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/des.h>
#include "bench.h"

static void parity(unsigned char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned v = b[i] & 0xFEu, p = v;
    p ^= p >> 4; p ^= p >> 2; p ^= p >> 1;
    b[i] = (unsigned char)(v | (~p & 1u));
  }
}

typedef struct { DES_key_schedule k1, k2; } des2;

static void des2_set(des2 *s, const unsigned char k[16]) {
  DES_cblock b1, b2;
  memcpy(b1, k, 8); memcpy(b2, k + 8, 8);
  DES_set_key_unchecked(&b1, &s->k1);
  DES_set_key_unchecked(&b2, &s->k2);
}

static void ecb3(des2 *s, const unsigned char *in, unsigned char *out, size_t n) {
  size_t i;
  for (i = 0; i < n; i += 8) {
    DES_cblock x, y;
    memcpy(x, in + i, 8);
    DES_ecb3_encrypt(&x, &y, &s->k1, &s->k2, &s->k1, DES_ENCRYPT);
    memcpy(out + i, y, 8);
  }
}

/* ICC MK (option A) with the cached IMK context, then the common session key. */
static void derive(EVP_CIPHER_CTX *imk, const char *pan, const char *psn, const char *atc_hex, unsigned char sk[16]) {
  char d[20];
  unsigned char y[16], mk[16], r[16] = {0};
  size_t pn = strlen(pan), i;
  int outl;
  des2 s;
  memcpy(d, pan, pn);
  memcpy(d + pn, psn, 2);
  memmove(d, d + pn + 2 - 16, 16);
  for (i = 0; i < 8; i++) y[i] = (unsigned char)(((d[2 * i] - '0') << 4) | (d[2 * i + 1] - '0'));
  for (i = 0; i < 8; i++) y[8 + i] = (unsigned char)~y[i];
  EVP_CipherUpdate(imk, mk, &outl, y, 16);
  parity(mk, 16);
  bench_unhex_fast(atc_hex, 4, r);
  memcpy(r + 8, r, 8);
  r[2] = 0xF0;
  r[10] = 0x0F;
  des2_set(&s, mk);
  ecb3(&s, r, sk, 16);
  OPENSSL_cleanse(&s, sizeof s);
  parity(sk, 16);
}

static void arqc(const unsigned char sk[16], const char *data_hex, unsigned char out[8]) {
  unsigned char buf[64];
  size_t n = bench_unhex_fast(data_hex, strlen(data_hex), buf), i, j;
  DES_cblock h = {0}, y;
  des2 s;
  buf[n] = 0x80;
  memset(buf + n + 1, 0, 7);
  n = (n / 8 + 1) * 8;
  des2_set(&s, sk);
  for (i = 0; i + 8 < n; i += 8) {
    for (j = 0; j < 8; j++) h[j] ^= buf[i + j];
    DES_ecb_encrypt(&h, &y, &s.k1, DES_ENCRYPT);
    memcpy(h, y, 8);
  }
  for (j = 0; j < 8; j++) h[j] ^= buf[n - 8 + j];
  DES_ecb3_encrypt(&h, &y, &s.k1, &s.k2, &s.k1, DES_ENCRYPT);
  memcpy(out, y, 8);
  OPENSSL_cleanse(&s, sizeof s);
}

int main(void) {
  unsigned char imkb[24], sk[16], ac[8], given[8];
  char hex[17];
  const char *data = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";
  EVP_CIPHER_CTX *imk;
  int ok = 0;
  bench_unhex("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", imkb);
  imk = ctx("DES-EDE3-ECB", imkb);
  derive(imk, "5413330089020011", "01", "001C", sk);
  arqc(sk, data, given);
  bench_hex(given, 8, hex);
  BENCH("arqc_generate_optA_common_40B", 1000000, {
    derive(imk, "5413330089020011", "01", "001C", sk);
    arqc(sk, data, ac);
    bench_hex(ac, 8, hex);
  });
  BENCH("arqc_verify_optA_common_40B", 1000000, {
    unsigned char g[8];
    bench_unhex_fast(hex, 16, g);
    derive(imk, "5413330089020011", "01", "001C", sk);
    arqc(sk, data, ac);
    ok += CRYPTO_memcmp(ac, g, 8) == 0;
  });
  BENCH("arpc_method1_optA_common", 1000000, {
    unsigned char x[8];
    des2 s;
    derive(imk, "5413330089020011", "01", "001C", sk);
    bench_unhex_fast(hex, 16, x);
    x[0] ^= 0x30; x[1] ^= 0x30;
    des2_set(&s, sk);
    ecb3(&s, x, ac, 8);
    bench_hex(ac, 8, hex);
  });
  return ok > 0 ? 0 : 1;
}
