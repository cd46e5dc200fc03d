/* as2805.c - pure-C baselines for bench/as2805.lua: KEK xor the request / response variant
 * (82C0 / 84C0 repeated) keyed into a fresh DES-EDE3-CBC context per call (as payhsm does),
 * zero IV, RAND_priv_bytes for KR, odd parity on KR and on its inverse, KCV with the cached
 * context. */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "bench.h"

static void variant(const unsigned char kek[16], unsigned char first, unsigned char k24[24]) {
  int i;
  for (i = 0; i < 16; i++) k24[i] = (unsigned char)(kek[i] ^ (i % 2 ? 0xC0 : first));
  memcpy(k24 + 16, k24, 8);
}

static void parity(unsigned char *b, int n) {
  int i;
  for (i = 0; i < n; i++) {
    unsigned v = b[i] >> 1, ones = 0;
    while (v) { ones += v & 1u; v >>= 1; }
    b[i] = (unsigned char)((b[i] & 0xFE) | (ones % 2 ? 0 : 1));
  }
}

/* in -> out (16 bytes) under KEK xor variant, TDES-CBC zero IV. */
static void crypt16(const unsigned char kek[16], unsigned char first, int enc, const unsigned char *in,
                    unsigned char *out) {
  unsigned char k24[24];
  int outl;
  EVP_CIPHER_CTX *c;
  variant(kek, first, k24);
  c = ctx("DES-EDE3-CBC", k24);
  if (!enc) EVP_CipherInit_ex2(c, NULL, NULL, NULL, 0, NULL);
  EVP_CipherUpdate(c, out, &outl, in, 16);
  EVP_CIPHER_CTX_free(c);
  OPENSSL_cleanse(k24, sizeof k24);
}

int main(void) {
  unsigned char kek[16], kek24[24], kr[16], krs[16], krr[16], kcv[8], zero[8] = {0};
  char hs[33], hr[33], hk[7];
  int outl, i;
  EVP_CIPHER_CTX *kc;
  bench_unhex("0123456789ABCDEFFEDCBA9876543210", kek);
  memcpy(kek24, kek, 16); memcpy(kek24 + 16, kek, 8);
  kc = ctx("DES-EDE3-ECB", kek24);
  BENCH("as2805_kek_validation_request_16B", 300000, {
    RAND_priv_bytes(kr, 16);
    parity(kr, 16);
    crypt16(kek, 0x82, 1, kr, krs);
    for (i = 0; i < 16; i++) kr[i] = (unsigned char)~kr[i];
    parity(kr, 16);
    crypt16(kek, 0x84, 1, kr, krr);
    EVP_CipherUpdate(kc, kcv, &outl, zero, 8);
    bench_hex(krs, 16, hs); bench_hex(krr, 16, hr); bench_hex(kcv, 3, hk);
  });
  BENCH("as2805_kek_validation_response_16B", 300000, {
    bench_unhex_fast(hs, 32, krs);
    crypt16(kek, 0x82, 0, krs, kr);
    for (i = 0; i < 16; i++) kr[i] = (unsigned char)~kr[i];
    parity(kr, 16);
    crypt16(kek, 0x84, 1, kr, krr);
    bench_hex(krr, 16, hr);
  });
  return 0;
}
